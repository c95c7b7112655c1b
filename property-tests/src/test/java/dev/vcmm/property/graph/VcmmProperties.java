package dev.vcmm.property.graph;

import dev.vcmm.Association;
import dev.vcmm.AssociationMode;
import dev.vcmm.Caching;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.Client;
import dev.vcmm.Device;
import dev.vcmm.DeviceFault;
import dev.vcmm.DeviceFaultException;
import dev.vcmm.DeviceStats;
import dev.vcmm.FaultAction;
import dev.vcmm.FaultHandler;
import dev.vcmm.DeviceKind;
import dev.vcmm.Mapping;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.VcmmOutOfMemoryException;
import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.RiscvSv39Format;
import dev.vcmm.pagetable.RiscvSv48Format;
import dev.vcmm.pagetable.UnsupportedAttributeException;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Function;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based property test of the whole VCMM graph API ({@link Vcmm}): generated sequences of createVcm
 * (virtual, one-to-one, CPU), cloneVcm, free, assoc / activate / deactivate / deassoc with devices of every
 * page-table format (two sharing one), one-to-one devices and a CPU, reserve / reserveAt / unreserve,
 * physAlloc (several chunk policies, contiguous sometimes) / physFree, back (with offsets, one allocation
 * backing several reservations in several VCMs) / unback, and devices at work: DMA read / write, fault handlers
 * (none, terminate, retry until they run out, back on demand, crash the device), crash, reset (activating again
 * what the crash deactivated), clients (creations go through one when the op's owner says so; close releases,
 * leaving orphaned the memory that backs others' reservations) and one-step DMA buffers. Operations that need a live object pick it by
 * index modulo the live count; one pick in ten takes a dead object instead (a freed VCM or allocation, an
 * unreserved reservation, a removed association) to exercise use after free.
 *
 * <p>The model is a few plain maps: VCM -> reservations (address, length, attributes, backing
 * {@code (allocation, offset)}), VCM -> associations, device -> association per slot. Before each operation
 * the model predicts the set of exceptions the call may throw (empty: it must succeed); a refused call must
 * throw one of them and change nothing. After EVERY step:
 * <ul>
 *   <li>every device translates sampled addresses (the edges of each reservation, just outside them, random
 *   addresses inside backed and unbacked reservations and VCMs, random addresses) exactly as the model says:
 *   {@code pa == pm.physicalAddress(offset + delta)}, a SECURE fault for a non-secure device on secure memory,
 *   or a fault; a write is refused where the reservation is read-only;</li>
 *   <li>{@link Vcmm#reservationsOf}, {@link PhysMem#backingCount()} and {@link Vcmm#whoMaps} for sampled
 *   physical addresses, and {@link Vcmm#translate(Vcm, long, Vcm)}, agree with the model;</li>
 *   <li>the handles agree (VCMs, reservations, backing, formats, device slots, association state);</li>
 *   <li>DMA (the ops' own, and 1-2 reads per device per step, plus a probe of every address whose mapping just went,
 *   which a stale IOTLB entry must not grant) is checked against a byte model of physical memory: a read returns the
 *   model's bytes, a write lands in the model's pages, a fault (translation, permission, secure, address size) stops
 *   it at the model's byte with the right reason and moves nothing from there on; handler calls and every device's
 *   counters (faults, retries, failed, bytes, crashes) and crashed state agree with the model;</li>
 *   <li>each data memory type's allocated bytes equal the sum of its live allocations' {@link PhysMem#length()},
 *   no physical page is owned twice, and the page-table memory has allocated bytes iff some VCM has a table.</li>
 * </ul>
 * At the end everything is torn down and every memory type, page tables included, has 0 allocated bytes, and every
 * byte of every chunk that ever backed a reservation (of all data memory, one sequence in 30) equals the model.
 *
 * <p><b>Replay:</b> the seed is printed; rerun with {@code -Dvcmm.seed=N}. 300 sequences by default, 100x with
 * {@code -Dvcmm.long=true}.
 */
class VcmmProperties {

    static final long PAGE = 4096;
    static final long MIB = 1L << 20;

    static final long PT_BASE = 0x0100_0000L;
    static final long DDR_BASE = 0x4000_0000L;
    static final long DDR_SIZE = 64 * MIB;
    static final long SRAM_BASE = 0x3000_0000L;
    static final long SRAM_SIZE = 2 * MIB;
    static final long SECURE_BASE = 0x3800_0000L;
    static final long SECURE_SIZE = 8 * MIB;
    static final String[] DATA_TYPES = {"ddr", "sram", "secure"};

    /**
     * Virtual VCM ranges: low for every format; low for the 39/48-bit formats but high (bit 31) for armv7;
     * the canonical upper half (x86-64, Sv39, Sv48 only); bit 47 set (arm64's high half, invalid elsewhere);
     * a tiny one that fills up.
     */
    static final long[][] REGIONS = {
        {0x1000_0000L, 64 * MIB},
        {0x9000_0000L, 32 * MIB},
        {0xFFFF_FFFF_C000_0000L, 32 * MIB},
        {0x0000_8000_0000_0000L, 16 * MIB},
        {0x2000_0000L, 2 * MIB},
    };

    static final ReservationAttributes[] ATTRIBUTES = {
        ReservationAttributes.RW,
        ReservationAttributes.RO,
        ReservationAttributes.RW.withUser(true),
        ReservationAttributes.RW.withExecute(true),
        ReservationAttributes.RW.with(Caching.WRITE_THROUGH),                  // refused by RISC-V tables
        ReservationAttributes.RW.withSecure(true),
        ReservationAttributes.RO.withSecure(true).with(Caching.NON_CACHED),
        new ReservationAttributes(false, false, true, false, true, false, Caching.WRITE_BACK_WRITE_ALLOCATE), // x only: RISC-V only
        ReservationAttributes.RW.with(Caching.DEVICE),
    };

    static final ChunkPolicy[] POLICIES = {
        ChunkPolicy.VCMM, ChunkPolicy.HUGE, ChunkPolicy.PAGES_4K, ChunkPolicy.of(64L << 10, 4L << 10), ChunkPolicy.of(1L << 20, 4L << 10),
    };

    static final long[] ALIGNS = {PAGE, 64L << 10, MIB, 2 * MIB};
    static final AssociationMode[] MODES = {AssociationMode.WHOLE, AssociationMode.WHOLE, AssociationMode.USE_LOW, AssociationMode.USE_HIGH};

    // ---------------------------------------------------------------------------------------------
    // operations: a pick is an index into the live objects (modulo their count); a pick with
    // pick % 10 == 9 takes a dead object instead, when there is one

    sealed interface Op {
        /** owner (here and below): {@code owner % 3 != 0} creates through the Vcmm, else through a client picked by {@code owner / 3}. */
        record CreateVcm(int region, int owner) implements Op { }

        record CreateOneToOneVcm(boolean secure, int owner) implements Op { }

        record CreateCpuVcm(int region) implements Op { }

        record CloneVcm(int vcm) implements Op { }

        record FreeVcm(int vcm) implements Op { }

        record Assoc(int vcm, int device, AssociationMode mode, int owner) implements Op { }

        record Activate(int assoc) implements Op { }

        record Deactivate(int assoc) implements Op { }

        record Deassoc(int assoc) implements Op { }

        record Reserve(int vcm, long pages, long align, int attributes, int owner) implements Op { }

        /** At {@code page} pages into the VCM, or (onMemory) at byte {@code page * 4K} of allocation {@code pm}. */
        record ReserveAt(int vcm, long page, long pages, int attributes, boolean onMemory, int pm, int owner) implements Op { }

        record PhysAlloc(String type, long bytes, ChunkPolicy policy, boolean contiguous, int owner) implements Op { }

        record PhysFree(int pm) implements Op { }

        /**
         * fit: pick an unbacked reservation and, among the allocations long enough and of a fitting security, one
         * to back it with (one-to-one: the allocation holding the reservation's address).
         */
        record Back(int res, int pm, long page, boolean fit) implements Op { }

        /** fit: pick among the backed reservations. */
        record Unback(int res, boolean fit) implements Op { }

        record Unreserve(int res) implements Op { }

        record OpenClient() implements Op { }

        /** Closes a client (a closed one again: a no-op); the model releases what it owned. */
        record CloseClient(int client) implements Op { }

        /**
         * A DMA of {@code length} bytes through a device: {@code device % 5 != 0} picks among the devices with an active
         * table; {@code target % 8 != 7} picks among the reservations the device maps (else any reservation, or a region).
         */
        record Dma(int device, int target, long offset, int length, boolean write) implements Op { }

        record Hook(int device, Handler handler) implements Op { }

        record Crash(int device) implements Op { }

        /**
         * A backed reservation in the device's active VCM (or a new, active one), through a client if owner says so;
         * {@code pages % 4 == 3}: reserved only (for demand paging).
         */
        record Buffer(int device, long pages, int attributes, int owner) implements Op { }

        /** Resets a device; reactivate: activate again the associations the crash deactivated. */
        record Reset(int device, boolean reactivate) implements Op { }
    }

    /**
     * Fault handlers the tests hook: NONE unhooks; TERMINATE; RETRY without fixing anything (the retries run out);
     * DEMAND backs the faulting unbacked reservation with new memory and retries; CRASH crashes the device and retries.
     */
    enum Handler { NONE, TERMINATE, RETRY, DEMAND, CRASH }

    static boolean longRun() {
        return Boolean.getBoolean("vcmm.long");
    }

    @Test
    void shouldAgreeWithTheModelAfterEveryStep() {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int examples = longRun() ? 30_000 : 300;
        System.out.printf("VcmmProperties seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n", seed, examples, seed);
        STATS.clear();
        qt().withFixedSeed(seed).withExamples(examples).withShrinkCycles(100)
            .forAll(operations())
            .checkAssert(ops -> new World(ops).run());
        System.out.println("VcmmProperties outcomes: " + new TreeMap<>(STATS));
    }

    /** Outcome counts (e.g. {@code Back ok}, {@code Back IllegalArgumentException}), to see what the runs exercised. */
    static final Map<String, Integer> STATS = new java.util.concurrent.ConcurrentHashMap<>();

    static void count(String what) {
        STATS.merge(what, 1, Integer::sum);
    }

    static Gen<int[]> ints(int n) {
        return Generate.intArrays(Generate.constant(n), Generate.range(0, 9999));
    }

    static long pages(int v) {
        if (v % 40 == 0) {
            return 4096 + v % 4096;                // 16-32 MiB: exhausts memory and small VCMs
        }
        return v < 7000 ? 1 + v % 64 : 1 + v % 700;
    }

    static Gen<List<Op>> operations() {
        Gen<Op> createVcm = ints(2).map(a -> new Op.CreateVcm(a[0] % REGIONS.length, a[1]));
        Gen<Op> createOne = ints(2).map(a -> new Op.CreateOneToOneVcm(a[0] % 3 == 2, a[1]));
        Gen<Op> createCpu = ints(1).map(a -> new Op.CreateCpuVcm(a[0] % 2 == 0 ? 0 : 2));
        Gen<Op> cloneVcm = ints(1).map(a -> new Op.CloneVcm(a[0]));
        Gen<Op> freeVcm = ints(1).map(a -> new Op.FreeVcm(a[0]));
        Gen<Op> assoc = ints(4).map(a -> new Op.Assoc(a[0], a[1], MODES[a[2] % MODES.length], a[3]));
        Gen<Op> activate = ints(1).map(a -> new Op.Activate(a[0]));
        Gen<Op> deactivate = ints(1).map(a -> new Op.Deactivate(a[0]));
        Gen<Op> deassoc = ints(1).map(a -> new Op.Deassoc(a[0]));
        Gen<Op> reserve = ints(5).map(a -> new Op.Reserve(a[0], pages(a[1]), ALIGNS[a[2] % ALIGNS.length], a[3] % ATTRIBUTES.length, a[4]));
        Gen<Op> reserveAt = ints(6).map(a -> new Op.ReserveAt(a[0], a[1] % 3 == 0 ? a[1] : a[1] % 64, pages(a[2]), a[3] % ATTRIBUTES.length,
            a[4] % 2 == 0, a[4] / 2, a[5]));
        Gen<Op> physAlloc = ints(5).map(a -> new Op.PhysAlloc(DATA_TYPES[a[0] % 5 < 3 ? 0 : a[0] % 5 - 2],
            (a[1] < 6000 ? 16 + a[1] % 240 : pages(a[1])) * PAGE - (a[1] % 3 == 0 ? 100 : 0),
            POLICIES[a[2] % POLICIES.length], a[3] % 4 == 0, a[4]));
        Gen<Op> physFree = ints(1).map(a -> new Op.PhysFree(a[0]));
        Gen<Op> back = ints(4).map(a -> new Op.Back(a[0], a[1], a[2] % 5 == 0 ? a[2] % 700 : 0, a[3] % 4 != 0));
        Gen<Op> unback = ints(2).map(a -> new Op.Unback(a[0], a[1] % 4 != 0));
        Gen<Op> unreserve = ints(1).map(a -> new Op.Unreserve(a[0]));
        Gen<Op> openClient = ints(1).map(a -> new Op.OpenClient());
        Gen<Op> closeClient = ints(1).map(a -> new Op.CloseClient(a[0]));
        Gen<Op> dma = ints(5).map(a -> new Op.Dma(a[0], a[1], a[2] * 997L, a[3] % 10 == 0 ? 1 + a[3] * 7 % (64 << 10) : 1 + a[3] % (3 * (int) PAGE),
            a[4] % 2 == 0));
        Gen<Op> hook = ints(2).map(a -> new Op.Hook(a[0], Handler.values()[a[1] % 8 < 3 ? Handler.DEMAND.ordinal() : a[1] % 8 - 3]));
        Gen<Op> crash = ints(1).map(a -> new Op.Crash(a[0]));
        Gen<Op> buffer = ints(4).map(a -> new Op.Buffer(a[0], a[1] % 10 == 0 ? 512 + a[1] % 3 : 1 + a[1] % 32, a[2] % ATTRIBUTES.length, a[3]));
        Gen<Op> reset = ints(2).map(a -> new Op.Reset(a[0], a[1] % 3 != 0));
        Gen<Op> op = Generate.frequency(List.of(
            Pair.of(3, createVcm), Pair.of(2, createOne), Pair.of(1, createCpu), Pair.of(1, cloneVcm), Pair.of(3, freeVcm),
            Pair.of(7, assoc), Pair.of(6, activate), Pair.of(3, deactivate), Pair.of(3, deassoc),
            Pair.of(8, reserve), Pair.of(5, reserveAt), Pair.of(7, physAlloc), Pair.of(3, physFree),
            Pair.of(16, back), Pair.of(5, unback), Pair.of(4, unreserve),
            Pair.of(2, openClient), Pair.of(2, closeClient), Pair.of(24, dma), Pair.of(5, hook), Pair.of(2, crash), Pair.of(3, reset),
            Pair.of(10, buffer)));
        return lists().of(op).ofSizeBetween(1, longRun() ? 120 : 60);
    }

    // ---------------------------------------------------------------------------------------------
    // the model

    static final class MVcm {
        final Vcm vcm;
        final boolean oneToOne;
        final long start;
        final long length;
        final TreeMap<Long, MRes> res = new TreeMap<>(Long::compareUnsigned);
        final List<MAssoc> assocs = new ArrayList<>();
        /** Its owning client was released while others used it: freed once empty. */
        boolean orphan;

        MVcm(Vcm vcm, boolean oneToOne, long start, long length) {
            this.vcm = vcm;
            this.oneToOne = oneToOne;
            this.start = start;
            this.length = length;
        }

        Set<PageTableFormat> formats() {
            Set<PageTableFormat> out = new HashSet<>();
            for (MAssoc a : assocs) {
                if (a.device.format() != null) {
                    out.add(a.device.format());
                }
            }
            return out;
        }

        MRes at(long a) {
            Map.Entry<Long, MRes> e = res.floorEntry(a);
            return e != null && e.getValue().contains(a) ? e.getValue() : null;
        }

        boolean covers(long a, long len) {
            return Long.compareUnsigned(a, start) >= 0 && Long.compareUnsigned(a - start, length) < 0
                && Long.compareUnsigned(len, length - (a - start)) <= 0;
        }

        boolean overlaps(long a, long len) {
            for (MRes r : res.values()) {
                if (Long.compareUnsigned(r.address, a + len - 1) <= 0 && Long.compareUnsigned(a, r.address + r.length - 1) <= 0) {
                    return true;
                }
            }
            return false;
        }

        /** @return whether a free range holds {@code len} bytes at a multiple of {@code align} */
        boolean fits(long len, long align) {
            long cursor = start;
            List<long[]> gaps = new ArrayList<>();
            for (MRes r : res.values()) {
                gaps.add(new long[] {cursor, r.address - cursor});
                cursor = r.address + r.length;
            }
            gaps.add(new long[] {cursor, start + length - cursor});
            for (long[] g : gaps) {
                long pad = -g[0] & (align - 1);
                if (Long.compareUnsigned(g[1], pad) >= 0 && Long.compareUnsigned(g[1] - pad, len) >= 0) {
                    return true;
                }
            }
            return false;
        }

        @Override
        public String toString() {
            return vcm.name();
        }
    }

    static final class MRes {
        final Reservation r;
        final MVcm vcm;
        final long address;
        final long length;
        final ReservationAttributes attributes;
        MPm pm;
        long offset = -1;

        MRes(Reservation r, MVcm vcm, long address, long length, ReservationAttributes attributes) {
            this.r = r;
            this.vcm = vcm;
            this.address = address;
            this.length = length;
            this.attributes = attributes;
        }

        boolean contains(long a) {
            return Long.compareUnsigned(a, address) >= 0 && Long.compareUnsigned(a - address, length) < 0;
        }

        long pa(long a) {
            return pm.pm.physicalAddress(offset + (a - address));
        }
    }

    static final class MPm {
        final PhysMem pm;
        final Set<MRes> backs = new LinkedHashSet<>();
        /** Its owning client was released while it still backed reservations: the last unback frees it. */
        boolean orphan;

        MPm(PhysMem pm) {
            this.pm = pm;
        }
    }

    static final class MAssoc {
        final Association a;
        final MVcm vcm;
        final Device device;
        final AssociationMode mode;
        boolean active;

        MAssoc(Association a, MVcm vcm, Device device, AssociationMode mode) {
            this.a = a;
            this.vcm = vcm;
            this.device = device;
            this.mode = mode;
        }

        int[] slots() {
            return switch (mode) {
                case WHOLE -> new int[] {0, 1};
                case USE_LOW -> new int[] {0};
                case USE_HIGH -> new int[] {1};
            };
        }
    }

    /** A client and what it created: released (in the model as in {@link Client}) when closed. */
    static final class MClient {
        final Client client;
        final Set<MVcm> vcms = new LinkedHashSet<>();
        final Set<MRes> res = new LinkedHashSet<>();
        final Set<MPm> pms = new LinkedHashSet<>();
        final Set<MAssoc> assocs = new LinkedHashSet<>();
        boolean closed;

        MClient(Client client) {
            this.client = client;
        }

        @Override
        public String toString() {
            return client.name();
        }
    }

    /** The DMA counters of a device, as the model expects them. */
    static final class MCounters {
        long faults;
        long retries;
        long failed;
        long bytesRead;
        long bytesWritten;
        long crashes;
    }

    /** @return the slot (0 low, 1 high) a device uses for {@code a}: the top bit of the format's input address */
    static int slotFor(Device d, long a) {
        PageTableFormat f = d.format();
        if (f == null) {
            return 0;
        }
        boolean high = f.isValidVa(-1L) ? a < 0 : ((a >>> (f.vaBits() - 1)) & 1) != 0;
        return high ? 1 : 0;
    }

    static boolean canExpress(PageTableFormat f, ReservationAttributes a) {
        try {
            f.checkAttributes(a.toPageAttributes());
            return true;
        } catch (UnsupportedAttributeException e) {
            return false;
        }
    }

    static boolean canMap(PageTableFormat f, MRes r) {
        return f.isValidVa(r.address) && f.isValidVa(r.address + r.length - 1);
    }

    /** One run of one sequence: a fresh Vcmm, the model, the steps and the checks. */
    static final class World {
        final List<Op> ops;
        final Random rnd;
        final List<String> trace = new ArrayList<>();
        Vcmm vcmm;
        final List<Device> devices = new ArrayList<>();
        Device cpu;
        final List<MVcm> vcms = new ArrayList<>();
        final List<Vcm> deadVcms = new ArrayList<>();
        final List<MRes> reservations = new ArrayList<>();
        final List<MRes> deadReservations = new ArrayList<>();
        final List<MPm> pms = new ArrayList<>();
        final List<MPm> deadPms = new ArrayList<>();
        final List<MAssoc> assocs = new ArrayList<>();
        final List<MAssoc> deadAssocs = new ArrayList<>();
        final Map<Device, MAssoc[]> slots = new IdentityHashMap<>();
        final List<MClient> clients = new ArrayList<>();
        final List<MClient> closedClients = new ArrayList<>();
        final Set<Device> crashed = new HashSet<>();
        /** The associations a crash deactivated, to activate again after the reset. */
        final Map<Device, List<MAssoc>> activeAtCrash = new IdentityHashMap<>();
        final Map<Device, MCounters> counters = new IdentityHashMap<>();
        final Map<Device, ModelHandler> handlers = new IdentityHashMap<>();
        /** Device addresses whose mapping just went (unback, unreserve, deactivate, crash, client close): probed next check. */
        final List<Long> recentlyUnmapped = new ArrayList<>();

        World(List<Op> ops) {
            this.ops = ops;
            this.rnd = new Random(ops.hashCode());
        }

        void run() {
            vcmm = Vcmm.builder()
                .memoryType(MemoryType.builder("pt").base(PT_BASE).size(16 * MIB))
                .memoryType(MemoryType.builder("ddr").base(DDR_BASE).size(DDR_SIZE))
                .memoryType(MemoryType.builder("sram").base(SRAM_BASE).size(SRAM_SIZE))
                .memoryType(MemoryType.builder("secure").base(SECURE_BASE).size(SECURE_SIZE).secure(true))
                .pageTableMemory("pt")
                .build();
            try {
                devices.add(vcmm.device("a64", Arm64Lpae4kFormat.INSTANCE));
                devices.add(vcmm.device("a64b", Arm64Lpae4kFormat.INSTANCE));   // shares the arm64 table
                devices.add(vcmm.device("v7", Armv7ShortFormat.INSTANCE));
                devices.add(vcmm.device("x86", DeviceKind.IOMMU, X86_64Format.INSTANCE, true));
                devices.add(vcmm.device("sv39", RiscvSv39Format.INSTANCE));
                devices.add(vcmm.device("sv48", DeviceKind.IOMMU, RiscvSv48Format.INSTANCE, true));
                devices.add(vcmm.oneToOneDevice("display"));
                devices.add(vcmm.device("dsp", DeviceKind.ONE_TO_ONE, null, true));
                cpu = vcmm.cpu("cpu", X86_64Format.INSTANCE);
                devices.add(cpu);
                for (Device d : devices) {
                    slots.put(d, new MAssoc[2]);
                    counters.put(d, new MCounters());
                }
                for (Op op : ops) {
                    trace.add(op.toString());
                    apply(op);
                    check();
                }
                trace.add("teardown");
                teardown();
                check();
                checkMemory(rnd.nextInt(30) == 0);
                for (MemoryType m : vcmm.memoryTypes()) {
                    assertEquals(0, m.stats().allocatedBytes(), () -> m.name() + " has allocated bytes after teardown: " + m.stats() + where());
                }
            } finally {
                vcmm.close();
            }
        }

        String where() {
            return "\n  after " + String.join("\n        ", trace.subList(Math.max(0, trace.size() - 12), trace.size()));
        }

        <T> T pick(List<T> live, List<T> dead, int i) {
            if (i % 10 == 9 && !dead.isEmpty()) {
                return dead.get(i / 10 % dead.size());
            }
            return live.isEmpty() ? null : live.get(i % live.size());
        }

        // -----------------------------------------------------------------------------------------
        // expected outcomes

        /** The exceptions a call may throw; empty: it must succeed. {@code maySucceed}: both are fine. */
        final class Expect {
            final Set<Class<? extends RuntimeException>> refusals = new LinkedHashSet<>();
            boolean maySucceed;

            Expect refuse(boolean condition, Class<? extends RuntimeException> type) {
                if (condition) {
                    refusals.add(type);
                }
                return this;
            }

            /** @return the result, or null if refused as expected */
            <T> T call(Supplier<T> call) {
                T result;
                try {
                    result = call.get();
                } catch (RuntimeException e) {
                    for (Class<? extends RuntimeException> c : refusals) {
                        if (c.isInstance(e)) {
                            count(trace.getLast().replaceAll("\\[.*", "") + " " + e.getClass().getSimpleName());
                            trace.set(trace.size() - 1, trace.getLast() + " -> refused: " + e.getClass().getSimpleName());
                            return null;
                        }
                    }
                    throw new AssertionError("unexpected " + e + (refusals.isEmpty() ? " (should succeed)" : " (expected one of " + names() + ")")
                        + where(), e);
                }
                if (!refusals.isEmpty() && !maySucceed) {
                    fail("should have been refused with one of " + names() + " but returned " + result + where());
                }
                count(trace.getLast().replaceAll("\\[.*", "") + " ok");
                return result;
            }

            void run(Runnable call) {
                call(() -> {
                    call.run();
                    return Boolean.TRUE;
                });
            }

            private List<String> names() {
                return refusals.stream().map(Class::getSimpleName).toList();
            }
        }

        Expect expect() {
            return new Expect();
        }

        // -----------------------------------------------------------------------------------------
        // steps

        /** The VCMM frees an orphaned VCM (its client released) as soon as nothing uses it. */
        void sweepOrphanVcms() {
            for (MVcm v : List.copyOf(vcms)) {
                if (v.orphan && v.res.isEmpty() && v.assocs.isEmpty()) {
                    vcms.remove(v);
                    deadVcms.add(v.vcm);
                }
            }
        }

        void apply(Op op) {
            switch (op) {
                case Op.CreateVcm c -> {
                    long[] region = REGIONS[c.region()];
                    MClient owner = owner(c.owner());
                    Vcm v = create(owner, expect(), () -> vcmm.createVcm(region[0], region[1]), k -> k.createVcm(region[0], region[1]));
                    if (v != null) {
                        own(owner, owner == null ? null : owner.vcms, new MVcm(v, false, region[0], region[1]), vcms);
                    }
                }
                case Op.CreateOneToOneVcm c -> {
                    MemoryType m = vcmm.memoryType(c.secure() ? "secure" : "ddr");
                    MClient owner = owner(c.owner());
                    Vcm v = create(owner, expect(), () -> vcmm.createOneToOneVcm(m), k -> k.createOneToOneVcm(m.base(), m.size()));
                    if (v != null) {
                        own(owner, owner == null ? null : owner.vcms, new MVcm(v, true, m.base(), m.size()), vcms);
                    }
                }
                case Op.CreateCpuVcm c -> {
                    long[] region = REGIONS[c.region()];
                    MAssoc[] s = slots.get(cpu);
                    Vcm v = expect().refuse(s[0] != null || s[1] != null, VcmmBusyException.class)
                        .refuse(crashed.contains(cpu), IllegalStateException.class)
                        .call(() -> vcmm.createCpuVcm(cpu, region[0], region[1]));
                    if (v != null) {
                        MVcm mv = new MVcm(v, false, region[0], region[1]);
                        vcms.add(mv);
                        assertEquals(1, v.associations().size(), where());
                        MAssoc a = new MAssoc(v.associations().getFirst(), mv, cpu, AssociationMode.WHOLE);
                        addAssoc(a);
                        a.active = true;
                        s[0] = a;
                        s[1] = a;
                    }
                }
                case Op.CloneVcm c -> {
                    MVcm src = pick(vcms, List.of(), c.vcm());
                    if (src == null) {
                        return;
                    }
                    Vcm v = expect().call(() -> vcmm.cloneVcm(src.vcm));
                    MVcm copy = new MVcm(v, src.oneToOne, src.start, src.length);
                    vcms.add(copy);
                    for (MRes r : src.res.values()) {
                        Reservation cr = v.reservationAt(r.address);
                        assertTrue(cr != null && cr.address() == r.address && cr.length() == r.length, () -> "clone lacks " + r.r + where());
                        MRes mr = new MRes(cr, copy, r.address, r.length, r.attributes);
                        copy.res.put(r.address, mr);
                        reservations.add(mr);
                        if (r.pm != null) {
                            mappedInModel(mr, r.pm, r.offset);
                        }
                    }
                }
                case Op.FreeVcm f -> {
                    int live = vcms.size();
                    Object target = f.vcm() % 10 == 9 && !deadVcms.isEmpty() ? deadVcms.get(f.vcm() / 10 % deadVcms.size())
                        : live == 0 ? null : vcms.get(f.vcm() % live);
                    if (target == null) {
                        return;
                    }
                    if (target instanceof Vcm dead) {
                        expect().refuse(true, IllegalStateException.class).run(() -> dead.free());
                        return;
                    }
                    MVcm v = (MVcm) target;
                    boolean busy = !v.res.isEmpty() || !v.assocs.isEmpty();
                    if (expect().refuse(busy, VcmmBusyException.class).call(() -> {
                        v.vcm.free();
                        return v;
                    }) != null) {
                        vcms.remove(v);
                        deadVcms.add(v.vcm);
                        assertTrue(v.vcm.isFreed(), where());
                    }
                }
                case Op.Assoc as -> {
                    Device d = devices.get(as.device() % devices.size());
                    int live = vcms.size();
                    if (as.vcm() % 10 == 9 && !deadVcms.isEmpty()) {
                        Vcm dead = deadVcms.get(as.vcm() / 10 % deadVcms.size());
                        expect().refuse(true, IllegalStateException.class).refuse(true, IllegalArgumentException.class)
                            .run(() -> vcmm.assoc(dead, d, as.mode()));
                        return;
                    }
                    if (live == 0) {
                        return;
                    }
                    MVcm v = vcms.get(as.vcm() % live);
                    boolean oneToOne = d.kind() == DeviceKind.ONE_TO_ONE;
                    PageTableFormat f = d.format();
                    boolean badTable = false;
                    if (f != null && !v.formats().contains(f)) {
                        for (MRes r : v.res.values()) {
                            badTable |= !canExpress(f, r.attributes) || (r.pm != null && !canMap(f, r));
                        }
                    }
                    // a VCM the device could never translate: outside its input space, or not in the half the mode programs
                    long first = v.vcm.start();
                    long last = first + v.vcm.length() - 1;
                    boolean unreachable = f != null && (!f.isValidVa(first) || !f.isValidVa(last) || (first < 0) != (last < 0)
                        || (as.mode() == AssociationMode.USE_LOW && (slotFor(d, first) != 0 || slotFor(d, last) != 0))
                        || (as.mode() == AssociationMode.USE_HIGH && (slotFor(d, first) != 1 || slotFor(d, last) != 1)));
                    MClient owner = owner(as.owner());
                    Association a = create(owner, expect()
                        .refuse(unreachable, IllegalArgumentException.class)
                        .refuse(oneToOne != v.oneToOne, IllegalArgumentException.class)
                        .refuse(oneToOne && as.mode() != AssociationMode.WHOLE, IllegalArgumentException.class)
                        .refuse(v.assocs.stream().anyMatch(x -> x.device == d), IllegalArgumentException.class)
                        .refuse(badTable, IllegalArgumentException.class),
                        () -> vcmm.assoc(v.vcm, d, as.mode()), k -> k.assoc(v.vcm, d, as.mode()));
                    if (a != null) {
                        assertFalse(a.isActive(), where());
                        MAssoc ma = new MAssoc(a, v, d, as.mode());
                        addAssoc(ma);
                        if (owner != null) {
                            owner.assocs.add(ma);
                        }
                    }
                }
                case Op.Activate ac -> {
                    MAssoc a = pick(assocs, deadAssocs, ac.assoc());
                    if (a != null) {
                        activate(a);
                    }
                }
                case Op.Deactivate de -> {
                    MAssoc a = pick(assocs, deadAssocs, de.assoc());
                    if (a == null) {
                        return;
                    }
                    if (expect().refuse(deadAssocs.contains(a), IllegalStateException.class).call(a.a::deactivate) != null) {
                        deactivateInModel(a);
                        a.vcm.res.values().forEach(this::unmapped);
                    }
                }
                case Op.Deassoc de -> {
                    MAssoc a = pick(assocs, deadAssocs, de.assoc());
                    if (a == null) {
                        return;
                    }
                    boolean removed = deadAssocs.contains(a);
                    if (expect().refuse(removed, IllegalStateException.class).refuse(!removed && a.active, VcmmBusyException.class)
                        .call(() -> {
                            a.a.deassoc();
                            return a;
                        }) != null) {
                        assocs.remove(a);
                        a.vcm.assocs.remove(a);
                        deadAssocs.add(a);
                        assertTrue(a.a.isRemoved(), where());
                        sweepOrphanVcms();
                    }
                }
                case Op.Reserve re -> {
                    if (re.vcm() % 10 == 9 && !deadVcms.isEmpty()) {
                        Vcm dead = deadVcms.get(re.vcm() / 10 % deadVcms.size());
                        expect().refuse(true, IllegalStateException.class)
                            .run(() -> dead.reserve(re.pages() * PAGE, ReservationAttributes.RW, re.align()));
                        return;
                    }
                    MVcm v = pick(vcms, List.of(), re.vcm());
                    if (v == null) {
                        return;
                    }
                    ReservationAttributes attrs = ATTRIBUTES[re.attributes()];
                    long len = re.pages() * PAGE;
                    boolean inexpressible = v.formats().stream().anyMatch(f -> !canExpress(f, attrs));
                    MClient owner = owner(re.owner());
                    Reservation r = create(owner, expect().refuse(inexpressible, IllegalArgumentException.class)
                        .refuse(!v.fits(len, re.align()), VcmmOutOfMemoryException.class),
                        () -> v.vcm.reserve(len - 1, attrs, re.align()),  // len - 1: rounded up to len
                        k -> k.reserve(v.vcm, len - 1, attrs, re.align()));
                    if (r != null) {
                        assertEquals(len, r.length(), where());
                        assertEquals(0, r.address() & (re.align() - 1), () -> "misaligned " + r + where());
                        assertTrue(v.covers(r.address(), len) && !v.overlaps(r.address(), len), () -> "bad place for " + r + where());
                        MRes mr = new MRes(r, v, r.address(), len, attrs);
                        addReservation(mr);
                        if (owner != null) {
                            owner.res.add(mr);
                        }
                    }
                }
                case Op.ReserveAt re -> {
                    if (re.vcm() % 10 == 9 && !deadVcms.isEmpty()) {
                        Vcm dead = deadVcms.get(re.vcm() / 10 % deadVcms.size());
                        expect().refuse(true, IllegalStateException.class).refuse(true, IllegalArgumentException.class)
                            .run(() -> dead.reserveAt(dead.start(), PAGE, ReservationAttributes.RW));
                        return;
                    }
                    MVcm v = pick(vcms, List.of(), re.vcm());
                    if (v == null) {
                        return;
                    }
                    ReservationAttributes attrs = ATTRIBUTES[re.attributes()];
                    long len = re.pages() * PAGE;
                    long address = v.start + re.page() * PAGE;
                    if (re.onMemory() && !pms.isEmpty()) {
                        PhysMem pm = pms.get(re.pm() % pms.size()).pm;
                        address = pm.physicalAddress(re.page() * PAGE % pm.length());
                        len = Math.min(len, pm.length() - re.page() * PAGE % pm.length());
                    }
                    long at = address;
                    long length = len;
                    boolean outside = !v.covers(at, length);
                    boolean inexpressible = v.formats().stream().anyMatch(f -> !canExpress(f, attrs));
                    MClient owner = owner(re.owner());
                    Reservation r = create(owner, expect().refuse(outside, IllegalArgumentException.class)
                        .refuse(inexpressible, IllegalArgumentException.class)
                        .refuse(!outside && v.overlaps(at, length), IllegalStateException.class),
                        () -> v.vcm.reserveAt(at, length, attrs), k -> k.reserveAt(v.vcm, at, length, attrs));
                    if (r != null) {
                        assertEquals(at, r.address(), where());
                        assertEquals(length, r.length(), where());
                        MRes mr = new MRes(r, v, at, length, attrs);
                        addReservation(mr);
                        if (owner != null) {
                            owner.res.add(mr);
                        }
                    }
                }
                case Op.PhysAlloc pa -> physAlloc(pa);
                case Op.PhysFree pf -> {
                    MPm m = pick(pms, deadPms, pf.pm());
                    if (m == null) {
                        return;
                    }
                    boolean freed = deadPms.contains(m);
                    if (expect().refuse(freed, IllegalStateException.class).refuse(!freed && !m.backs.isEmpty(), VcmmBusyException.class)
                        .call(() -> {
                            m.pm.free();
                            return m;
                        }) != null) {
                        pms.remove(m);
                        deadPms.add(m);
                        assertTrue(m.pm.isFreed(), where());
                    }
                }
                case Op.Back b -> back(b);
                case Op.Unback u -> {
                    List<MRes> backed = reservations.stream().filter(x -> x.pm != null).toList();
                    MRes r = u.fit() && !backed.isEmpty() ? backed.get(u.res() % backed.size()) : pick(reservations, deadReservations, u.res());
                    if (r == null) {
                        return;
                    }
                    if (expect().refuse(r.pm == null, IllegalStateException.class).call(() -> {
                        r.r.unback();
                        return r;
                    }) != null) {
                        unmapped(r);
                        unbackInModel(r);
                    }
                }
                case Op.Unreserve u -> {
                    MRes r = pick(reservations, deadReservations, u.res());
                    if (r == null) {
                        return;
                    }
                    boolean released = deadReservations.contains(r);
                    if (expect().refuse(released, IllegalStateException.class).refuse(r.pm != null, VcmmBusyException.class)
                        .call(() -> {
                            r.r.unreserve();
                            return r;
                        }) != null) {
                        reservations.remove(r);
                        r.vcm.res.remove(r.address);
                        deadReservations.add(r);
                        unmapped(r);
                        sweepOrphanVcms();
                    }
                }
                case Op.OpenClient o -> clients.add(new MClient(vcmm.client("client" + (clients.size() + closedClients.size()))));
                case Op.CloseClient c -> closeClient(c);
                case Op.Dma d -> dmaOp(d);
                case Op.Buffer b -> buffer(b);
                case Op.Hook h -> {
                    Device d = devices.get(h.device() % devices.size());
                    ModelHandler mh = h.handler() == Handler.NONE ? null : new ModelHandler(d, h.handler());
                    d.hook(mh);
                    handlers.put(d, mh);
                }
                case Op.Crash c -> {
                    Device d = devices.get(c.device() % devices.size());
                    Map<MemoryType, Long> before = allocatedBytes();
                    d.crash();
                    crashInModel(d);
                    assertEquals(before, allocatedBytes(), () -> "a crash freed or allocated memory" + where());
                }
                case Op.Reset r -> {
                    Device d = devices.get(r.device() % devices.size());
                    d.reset();
                    crashed.remove(d);
                    List<MAssoc> wereActive = activeAtCrash.getOrDefault(d, List.of());
                    activeAtCrash.remove(d);
                    if (r.reactivate()) {
                        for (MAssoc a : wereActive) {
                            if (assocs.contains(a)) {
                                trace.set(trace.size() - 1, trace.getLast() + ", activates " + a.a);
                                activate(a);
                            }
                        }
                    }
                    // the memory is as the crash left it: every readable reservation the device maps reads as the model says
                    for (MRes x : reachable(d)) {
                        if (x.pm != null) {
                            long at = x.address + (rnd.nextLong(x.length) & -8);
                            dma(d, at, (int) Math.min(64, x.address + x.length - at), false, false);
                        }
                    }
                }
            }
        }

        // -----------------------------------------------------------------------------------------
        // clients: created through them when an op's owner says so, released in the model as Client documents

        MClient owner(int o) {
            return o % 3 != 0 ? null : pick(clients, closedClients, o / 3);
        }

        /** Calls {@code direct}, or {@code viaClient} with the owner's client (refused by a closed client, nothing else). */
        <T> T create(MClient owner, Expect e, Supplier<T> direct, Function<Client, T> viaClient) {
            if (owner == null) {
                return e.call(direct);
            }
            trace.set(trace.size() - 1, trace.getLast() + " via " + owner + (owner.closed ? " (closed)" : ""));
            if (owner.closed) {
                return expect().refuse(true, IllegalStateException.class).call(() -> viaClient.apply(owner.client));
            }
            return e.call(() -> viaClient.apply(owner.client));
        }

        <T> void own(MClient owner, Set<T> owned, T object, List<T> live) {
            live.add(object);
            if (owner != null) {
                owned.add(object);
            }
        }

        void closeClient(Op.CloseClient op) {
            MClient c = pick(clients, closedClients, op.client());
            if (c != null) {
                release(c);
            }
        }

        /**
         * Closes a client: the model unbacks and unreserves its reservations, deactivates and removes its associations,
         * frees its VCMs that nothing else uses and its allocations that back nothing (the others become orphans, freed
         * by their last unback). A closed client: a no-op.
         */
        void release(MClient c) {
            if (c.closed) {
                expect().run(c.client::close);
                return;
            }
            List<MPm> freedByClose = new ArrayList<>(); // orphans of other clients whose last backing was c's
            for (MRes r : c.res) {
                if (reservations.contains(r)) {
                    if (r.pm != null) {
                        unbackInModel(r, freedByClose);
                    }
                    reservations.remove(r);
                    r.vcm.res.remove(r.address);
                    deadReservations.add(r);
                    unmapped(r);
                }
            }
            for (MAssoc a : c.assocs) {
                if (assocs.contains(a)) {
                    deactivateInModel(a);
                    a.vcm.res.values().forEach(this::unmapped);
                    assocs.remove(a);
                    a.vcm.assocs.remove(a);
                    deadAssocs.add(a);
                }
            }
            for (MVcm v : c.vcms) {
                if (vcms.contains(v)) {
                    v.orphan = true; // freed now if empty, else once the others' last use goes
                }
            }
            sweepOrphanVcms();
            for (MPm m : c.pms) {
                if (pms.contains(m)) {
                    if (m.backs.isEmpty()) {
                        pms.remove(m);
                        deadPms.add(m);
                    } else {
                        m.orphan = true;
                    }
                }
            }
            expect().run(c.client::close);
            c.closed = true;
            clients.remove(c);
            closedClients.add(c);
            assertTrue(c.client.isClosed(), where());
            for (MPm m : freedByClose) {
                assertTrue(m.pm.isFreed(), () -> "closing " + c + " unbacked the last backing of orphan " + m.pm + " but did not free it" + where());
            }
            // everything it owned is gone, but memory still backing others' reservations and VCMs others still use
            for (MRes r : c.res) {
                assertTrue(r.r.isReleased() && !r.r.isBacked(), () -> "closed " + c + " left " + r.r + where());
            }
            for (MAssoc a : c.assocs) {
                assertTrue(a.a.isRemoved() && !a.a.isActive(), () -> "closed " + c + " left " + a.a + where());
            }
            for (MVcm v : c.vcms) {
                assertEquals(!vcms.contains(v), v.vcm.isFreed(), () -> "closed " + c + ": " + v + " freed=" + v.vcm.isFreed() + where());
            }
            for (MPm m : c.pms) {
                assertEquals(m.backs.isEmpty(), m.pm.isFreed(), () -> "closed " + c + ": " + m.pm + " backs " + m.backs.size() + where());
            }
        }

        void unbackInModel(MRes r) {
            unbackInModel(r, null);
        }

        /**
         * @param freedLater null when the real unback has happened: an orphan whose last backing this was must be
         *                   freed now; else the orphans to check once the real call (a client's close) has run
         */
        void unbackInModel(MRes r, List<MPm> freedLater) {
            MPm m = r.pm;
            m.backs.remove(r);
            r.pm = null;
            r.offset = -1;
            if (m.orphan && m.backs.isEmpty()) {
                pms.remove(m);
                deadPms.add(m);
                if (freedLater != null) {
                    freedLater.add(m);
                } else {
                    assertTrue(m.pm.isFreed(), () -> "the last unback of orphan " + m.pm + " did not free it" + where());
                }
            }
        }

        /** Notes addresses of a reservation that just lost a mapping somewhere: the next checks DMA there. */
        void unmapped(MRes r) {
            if (recentlyUnmapped.size() < 12) {
                recentlyUnmapped.add(r.address);
                recentlyUnmapped.add(r.address + (rnd.nextLong(r.length) & -8));
            }
        }

        // -----------------------------------------------------------------------------------------
        // activation, crash

        void activate(MAssoc a) {
            boolean removed = deadAssocs.contains(a);
            boolean down = !removed && !a.active && crashed.contains(a.device);
            boolean busy = false;
            if (!removed && !a.active && !down) {
                for (int s : a.slots()) {
                    busy |= slots.get(a.device)[s] != null;
                }
            }
            if (expect().refuse(removed || down, IllegalStateException.class).refuse(busy, VcmmBusyException.class)
                .call(a.a::activate) != null && !a.active) {
                a.active = true;
                for (int s : a.slots()) {
                    slots.get(a.device)[s] = a;
                }
            }
        }

        void crashInModel(Device d) {
            List<MAssoc> wereActive = activeAtCrash.computeIfAbsent(d, k -> new ArrayList<>());
            for (MAssoc a : assocs) {
                if (a.device == d && a.active) {
                    wereActive.add(a);
                    deactivateInModel(a);
                    a.vcm.res.values().forEach(this::unmapped);
                }
            }
            crashed.add(d);
            counters.get(d).crashes++;
        }

        Map<MemoryType, Long> allocatedBytes() {
            Map<MemoryType, Long> out = new HashMap<>();
            for (MemoryType m : vcmm.memoryTypes()) {
                out.put(m, m.stats().allocatedBytes());
            }
            return out;
        }

        /** @return the reservations of the VCMs active on {@code d}, each in the slot it goes through */
        List<MRes> reachable(Device d) {
            List<MRes> out = new ArrayList<>();
            MAssoc[] s = slots.get(d);
            for (int i = 0; i < 2; i++) {
                if (s[i] != null && (i == 0 || s[1] != s[0])) {
                    for (MRes r : s[i].vcm.res.values()) {
                        if (slotFor(d, r.address) == i || s[1] == s[0]) {
                            out.add(r);
                        }
                    }
                }
            }
            return out;
        }

        // -----------------------------------------------------------------------------------------
        // DMA

        /** Bytes of physical memory by 4 KiB page (the key is its address); a page never written is zeros. */
        final Map<Long, byte[]> memory = new HashMap<>();
        final List<Long> writtenPages = new ArrayList<>();

        void modelWrite(long pa, byte[] src, int off, int n) {
            byte[] page = memory.computeIfAbsent(pa & -PAGE, k -> {
                writtenPages.add(k);
                return new byte[(int) PAGE];
            });
            System.arraycopy(src, off, page, (int) (pa & (PAGE - 1)), n); // n never crosses a page: pieces are per page
        }

        /** Zero on handoff: a new allocation's chunks read as zero, whatever a previous owner left in them. */
        void handedOff(PhysMem pm) {
            for (PhysMem.Chunk c : pm.chunks()) {
                for (long page = c.pa(); page < c.end(); page += PAGE) {
                    memory.remove(page);
                }
            }
            checkPhysical(pm.physicalAddress(0), (int) Math.min(PAGE, pm.length()));
        }

        byte[] modelRead(long pa, int n) {
            byte[] page = memory.get(pa & -PAGE);
            int from = (int) (pa & (PAGE - 1));
            return page == null ? new byte[n] : Arrays.copyOfRange(page, from, from + n);
        }

        /** Compares {@code n} bytes of physical memory at {@code pa} (within a page) with the model. */
        void checkPhysical(long pa, int n) {
            byte[] got = new byte[n];
            vcmm.memoryTypeAt(pa).memory().copyOut(pa, got, 0, n);
            byte[] expected = modelRead(pa, n);
            int at = Arrays.mismatch(expected, got);
            assertEquals(-1, at, () -> String.format("physical byte 0x%x is 0x%02x, the model says 0x%02x%s", pa + at, got[at], expected[at], where()));
        }

        /**
         * No DMA wrote where it should not have: every byte of every chunk that ever backed a reservation (all a device
         * could ever reach) equals the model, and with {@code everything} every byte of every data memory type.
         */
        void checkMemory(boolean everything) {
            byte[] block = new byte[1 << 20];
            byte[] zero = new byte[(int) PAGE];
            List<long[]> ranges = new ArrayList<>();
            if (everything) {
                for (String name : DATA_TYPES) {
                    MemoryType m = vcmm.memoryType(name);
                    ranges.add(new long[] {m.base(), m.size()});
                }
            } else {
                everMapped.forEach(c -> ranges.add(new long[] {c.pa(), c.size()}));
            }
            for (long[] range : ranges) {
                for (long base = range[0]; base < range[0] + range[1]; base += block.length) {
                    int n = (int) Math.min(block.length, range[0] + range[1] - base);
                    vcmm.memoryTypeAt(base).memory().copyOut(base, block, 0, n);
                    for (int off = 0; off < n; off += (int) PAGE) {
                        byte[] expected = memory.getOrDefault(base + off, zero);
                        int at = Arrays.mismatch(expected, 0, (int) PAGE, block, off, off + (int) PAGE);
                        long pa = base + off + at;
                        int o = off;
                        assertEquals(-1, at, () -> String.format("byte at pa=0x%x is 0x%02x, the model says 0x%02x%s", pa,
                            block[o + at], expected[at], where()));
                    }
                }
            }
            count(everything ? "memory: checked all" : "memory: checked the chunks ever mapped");
        }

        /** The chunks of every allocation that ever backed a reservation. */
        final Set<PhysMem.Chunk> everMapped = new HashSet<>();

        void mappedInModel(MRes r, MPm m, long offset) {
            r.pm = m;
            r.offset = offset;
            m.backs.add(r);
            everMapped.addAll(m.pm.chunks());
        }

        static boolean isSecurePa(long pa) {
            return pa >= SECURE_BASE && pa < SECURE_BASE + SECURE_SIZE;
        }

        /**
         * What the model says a DMA does: the pieces it moves, each {@code {position in the buffer, pa, bytes}} within
         * one 4 KiB page, up to the first page that faults (a leaf is whole pages of one reservation, so a leaf's pages
         * all fault or none does: the DMA stops at the same byte as one moving leaf by leaf).
         */
        record Prediction(int done, FaultReason reason, long faultAddress, List<long[]> pieces) { }

        Prediction predict(Device d, long address, int length, Access access) {
            List<long[]> pieces = new ArrayList<>();
            int pos = 0;
            while (pos < length) {
                long va = address + pos;
                int n = (int) Math.min(length - pos, PAGE - (va & (PAGE - 1)));
                MAssoc as = slots.get(d)[slotFor(d, va)];
                FaultReason why = null;
                long pa = -1;
                if (as == null) {
                    why = FaultReason.TRANSLATION;
                } else if (d.format() != null && !d.format().isValidVa(va)) {
                    why = FaultReason.ADDRESS_SIZE;
                } else {
                    MRes r = as.vcm.at(va);
                    if (r == null || r.pm == null) {
                        why = FaultReason.TRANSLATION;
                    } else if (!(access == Access.READ ? r.attributes.read() : r.attributes.write())) {
                        why = FaultReason.PERMISSION;
                    } else {
                        pa = r.pa(va);
                        if (isSecurePa(pa) && !d.isSecure()) {
                            why = FaultReason.SECURE;
                        }
                    }
                }
                if (why != null) {
                    return new Prediction(pos, why, va, pieces);
                }
                pieces.add(new long[] {pos, pa, n});
                pos += n;
            }
            return new Prediction(length, null, 0, pieces);
        }

        /**
         * A DMA buffer for a device in one step: its active VCM (or a new one, associated and activated), a reservation,
         * memory (secure for some secure reservations) and the backing; through the owner's client if it has one.
         */
        void buffer(Op.Buffer b) {
            Device d = devices.get(b.device() % devices.size());
            MClient o = owner(b.owner());
            MClient owner = o == null || o.closed ? null : o;
            if (owner != null) {
                trace.set(trace.size() - 1, trace.getLast() + " via " + owner);
            }
            Client k = owner == null ? null : owner.client;
            MAssoc[] s = slots.get(d);
            MAssoc as = s[0] != null ? s[0] : s[1];
            boolean one = d.kind() == DeviceKind.ONE_TO_ONE;
            if (as == null) {
                if (d == cpu || crashed.contains(d)) {
                    return; // the CPU's VCM comes from CreateCpuVcm; a crashed device cannot be activated
                }
                MemoryType ddr = vcmm.memoryType("ddr");
                long start = one ? ddr.base() : REGIONS[0][0];
                long length = one ? ddr.size() : REGIONS[0][1];
                Vcm v = expect().call(() -> k == null ? (one ? vcmm.createOneToOneVcm(ddr) : vcmm.createVcm(start, length))
                    : (one ? k.createOneToOneVcm(start, length) : k.createVcm(start, length)));
                MVcm mv = new MVcm(v, one, start, length);
                own(owner, owner == null ? null : owner.vcms, mv, vcms);
                Association a = expect().call(() -> k == null ? vcmm.assoc(v, d) : k.assoc(v, d));
                as = new MAssoc(a, mv, d, AssociationMode.WHOLE);
                addAssoc(as);
                if (owner != null) {
                    owner.assocs.add(as);
                }
                activate(as);
            }
            MVcm v = as.vcm;
            ReservationAttributes wanted = ATTRIBUTES[b.attributes()];
            ReservationAttributes attrs = v.formats().stream().allMatch(f -> canExpress(f, wanted)) ? wanted : ReservationAttributes.RW;
            long len = b.pages() * PAGE;
            if (!one && b.pages() % 4 == 3) { // a lazy buffer: reserved only, for a handler to back on demand
                long align = len >= 2 * MIB ? 2 * MIB : PAGE;
                Reservation r = expect().refuse(!v.fits(len, align), VcmmOutOfMemoryException.class)
                    .call(() -> k == null ? v.vcm.reserve(len, attrs, align) : k.reserve(v.vcm, len, attrs, align));
                if (r != null) {
                    MRes mr = new MRes(r, v, r.address(), len, attrs);
                    addReservation(mr);
                    if (owner != null) {
                        owner.res.add(mr);
                    }
                }
                return;
            }
            boolean secureMemory = attrs.secure() && !one && b.pages() % 2 == 1;
            String type = secureMemory ? "secure" : "ddr";
            PhysAllocOptions options = one ? PhysAllocOptions.CONTIGUOUS : PhysAllocOptions.DEFAULT;
            ChunkPolicy policy = one ? ChunkPolicy.PAGES_4K : ChunkPolicy.VCMM;
            PhysMem pm;
            try {
                pm = k == null ? vcmm.physAlloc(vcmm.memoryType(type), len, policy, options) : k.physAlloc(type, len, policy, options);
            } catch (VcmmOutOfMemoryException e) {
                count("Buffer out of memory");
                return;
            }
            handedOff(pm);
            MPm m = new MPm(pm);
            own(owner, owner == null ? null : owner.pms, m, pms);
            long align = len >= 2 * MIB ? 2 * MIB : PAGE;
            long at = pm.physicalAddress(0);
            Expect e = one ? expect().refuse(!v.covers(at, len), IllegalArgumentException.class)
                .refuse(v.covers(at, len) && v.overlaps(at, len), IllegalStateException.class)
                : expect().refuse(!v.fits(len, align), VcmmOutOfMemoryException.class);
            Reservation r = e.call(() -> one ? (k == null ? v.vcm.reserveAt(at, len, attrs) : k.reserveAt(v.vcm, at, len, attrs))
                : (k == null ? v.vcm.reserve(len, attrs, align) : k.reserve(v.vcm, len, attrs, align)));
            if (r == null) {
                return;
            }
            MRes mr = new MRes(r, v, r.address(), len, attrs);
            addReservation(mr);
            if (owner != null) {
                owner.res.add(mr);
            }
            if (v.formats().stream().allMatch(f -> canMap(f, mr))) {
                expect().run(() -> r.back(pm, 0));
                mappedInModel(mr, m, 0);
            }
        }

        void dmaOp(Op.Dma op) {
            List<Device> active = devices.stream().filter(x -> slots.get(x)[0] != null || slots.get(x)[1] != null).toList();
            List<Device> mapping = active.stream().filter(x -> reachable(x).stream().anyMatch(r -> r.pm != null)).toList();
            int kind = op.device() % 5;
            Device d = kind < 3 && !mapping.isEmpty() ? mapping.get(op.device() / 5 % mapping.size())
                : kind < 4 && !active.isEmpty() ? active.get(op.device() / 5 % active.size())
                : devices.get(op.device() % devices.size());
            List<MRes> reach = reachable(d);
            List<MRes> backed = reach.stream().filter(r -> r.pm != null).toList();
            List<MRes> unbacked = reach.stream().filter(r -> r.pm == null).toList();
            ModelHandler h = handlers.get(d);
            long address;
            if (h != null && h.kind == Handler.DEMAND && !unbacked.isEmpty() && op.target() % 8 < 4) {
                MRes r = unbacked.get(op.target() % unbacked.size());
                address = r.address + op.offset() % r.length;
            } else if (!backed.isEmpty() && op.target() % 8 < 5) {
                MRes r = backed.get(op.target() % backed.size());
                address = r.address + within(op.offset(), r.length);
            } else if (!reach.isEmpty() && op.target() % 8 != 7) {
                MRes r = reach.get(op.target() % reach.size());
                address = r.address + within(op.offset(), r.length);
            } else if (!reservations.isEmpty() && op.target() % 16 != 15) {
                MRes r = reservations.get(op.target() % reservations.size());
                address = r.address + within(op.offset(), r.length);
            } else {
                long[] region = REGIONS[op.target() % REGIONS.length];
                address = region[0] + op.offset() % region[1];
            }
            trace.set(trace.size() - 1, trace.getLast() + String.format(" -> %s at 0x%x", d.name(), address));
            dma(d, address, op.length(), op.write(), true);
        }

        /** @return an offset in a reservation of {@code length} bytes, or (one in three) close to its end or just past it */
        static long within(long offset, long length) {
            return offset % 3 == 0 ? Math.max(0, length - offset / 3 % (2 * PAGE)) : offset % length;
        }

        /**
         * Runs one DMA and checks it against the model: the bytes moved (a read returns the model's bytes and leaves the
         * buffer untouched from the fault on; a write lands in the model's pages and nowhere else in them), the fault
         * (address, access, reason; why it was not retried), the handler's calls, and the device's counters.
         *
         * @param armed whether the device's handler acts as its kind says; disarmed (the checks' own DMA) it terminates
         */
        void dma(Device d, long address, int length, boolean write, boolean armed) {
            Access access = write ? Access.WRITE : Access.READ;
            MCounters c = counters.get(d);
            ModelHandler h = handlers.get(d);
            boolean down = crashed.contains(d);
            Prediction before = predict(d, address, length, access);
            byte[] buffer = new byte[length];
            rnd.nextBytes(buffer);
            byte[] original = buffer.clone();
            if (h != null) {
                h.begin(armed);
            }
            RuntimeException thrown = null;
            try {
                if (write) {
                    d.write(address, buffer, 0, length);
                } else {
                    d.read(address, buffer, 0, length);
                }
            } catch (DeviceFaultException | IllegalStateException e) {
                thrown = e;
            }
            RuntimeException t = thrown;
            String what = String.format("%s %s 0x%x+%d", d.name(), access, address, length);
            if (down) {
                IllegalStateException e = assertInstanceOf(IllegalStateException.class, t, () -> "DMA through crashed " + what + where());
                assertTrue(e.getMessage().contains("crashed"), () -> e + where());
                assertArrayEquals(original, buffer, () -> "crashed " + what + " moved bytes" + where());
                count("dma: crashed");
                return;
            }
            Prediction p = h != null && armed && h.kind == Handler.DEMAND ? predict(d, address, length, access) : before;
            if (p.reason() != null && !(h != null && h.crashedIt)) {
                assertInstanceOf(DeviceFaultException.class, t,
                    () -> String.format("%s should fault (%s at 0x%x), got %s%s", what, p.reason(), p.faultAddress(), t, where()));
            }
            for (long[] piece : p.pieces()) {
                int pos = (int) piece[0];
                long pa = piece[1];
                int n = (int) piece[2];
                if (write) {
                    modelWrite(pa, buffer, pos, n); // the pages are checked once all pieces are in: two may alias one page
                } else {
                    byte[] expected = modelRead(pa, n);
                    int at = Arrays.mismatch(expected, 0, n, buffer, pos, pos + n);
                    assertEquals(-1, at, () -> String.format("%s read 0x%02x at 0x%x (pa=0x%x), the model says 0x%02x%s", what,
                        buffer[pos + at], address + pos + at, pa + at, expected[at], where()));
                }
            }
            if (write) {
                for (long[] piece : p.pieces()) {
                    checkPhysical(piece[1] & -PAGE, (int) PAGE);
                }
            }
            if (!write) {
                assertEquals(-1, Arrays.mismatch(original, p.done(), length, buffer, p.done(), length),
                    () -> what + " changed the buffer at or after the fault at +" + p.done() + where());
            }
            if (write) {
                c.bytesWritten += p.done();
            } else {
                c.bytesRead += p.done();
            }
            if (h != null) {
                c.faults += h.calls;
                c.retries += h.retries;
            }
            if (p.reason() == null) {
                assertTrue(t == null, () -> what + " should succeed, got " + t + where());
                count("dma: " + access + " ok");
            } else if (h != null && h.crashedIt) {
                IllegalStateException e = assertInstanceOf(IllegalStateException.class, t,
                    () -> what + ": the handler crashed the device, got " + t + where());
                assertTrue(e.getMessage().contains("crashed"), () -> e + where());
                assertEquals(1, h.calls, where());
                count("dma: crashed by the handler");
            } else {
                DeviceFaultException e = assertInstanceOf(DeviceFaultException.class, t,
                    () -> String.format("%s should fault (%s at 0x%x), got %s%s", what, p.reason(), p.faultAddress(), t, where()));
                DeviceFault f = e.fault();
                assertSame(d, f.device(), where());
                assertEquals(access, f.access(), where());
                assertEquals(p.faultAddress(), f.address(), () -> what + ": " + f + where());
                assertEquals(p.reason(), f.reason(), () -> what + ": " + f + where());
                boolean exhausted = h != null && armed && h.kind == Handler.RETRY;
                String why = h == null ? "no fault handler" : exhausted ? "still faulting after" : "terminated by the fault handler";
                assertTrue(e.getMessage().contains(why), () -> e.getMessage() + " should say " + why + where());
                if (h != null) {
                    DeviceFault last = h.seen.getLast();
                    assertEquals(f.address(), last.address(), where());
                    assertEquals(f.reason(), last.reason(), where());
                }
                c.failed++;
                if (h == null || exhausted) {
                    c.faults++;
                }
                count("dma: " + access + " " + p.reason() + (h == null ? "" : " " + (armed ? h.kind : "disarmed")));
            }
            if (h != null) {
                int faulted = p.reason() == null ? 0 : 1;
                int expected = !armed ? faulted : switch (h.kind) {
                    case RETRY -> faulted * 8;
                    case DEMAND -> h.retries + faulted;
                    default -> faulted;
                };
                assertEquals(expected, h.calls, () -> what + ": handler " + h.kind + " calls " + h.seen + where());
            }
        }

        /** The handlers the sequences hook; armed only for the DMA of a {@link Op.Dma}, terminating for the checks' own. */
        final class ModelHandler implements FaultHandler {
            final Device device;
            final Handler kind;
            boolean armed;
            int calls;
            int retries;
            boolean crashedIt;
            final List<DeviceFault> seen = new ArrayList<>();

            ModelHandler(Device device, Handler kind) {
                this.device = device;
                this.kind = kind;
            }

            void begin(boolean armed) {
                this.armed = armed;
                calls = 0;
                retries = 0;
                crashedIt = false;
                seen.clear();
            }

            @Override
            public FaultAction onFault(DeviceFault f) {
                calls++;
                seen.add(f);
                assertSame(device, f.device(), where());
                if (!armed) {
                    return FaultAction.TERMINATE;
                }
                switch (kind) {
                    case RETRY -> {
                        retries++;
                        return FaultAction.RETRY;
                    }
                    case CRASH -> {
                        device.crash();
                        crashInModel(device);
                        crashedIt = true;
                        retries++;
                        return FaultAction.RETRY;
                    }
                    case DEMAND -> {
                        if (demandBack(f)) {
                            retries++;
                            return FaultAction.RETRY;
                        }
                        return FaultAction.TERMINATE;
                    }
                    default -> {
                        return FaultAction.TERMINATE;
                    }
                }
            }

            /** Backs the unbacked reservation a translation fault hit with new memory (in the model too). */
            boolean demandBack(DeviceFault f) {
                if (f.reason() != FaultReason.TRANSLATION) {
                    return false;
                }
                MAssoc as = slots.get(device)[slotFor(device, f.address())];
                MRes r = as == null ? null : as.vcm.at(f.address());
                if (r == null || r.pm != null || r.vcm.oneToOne || r.vcm.formats().stream().anyMatch(x -> !canMap(x, r))) {
                    count("dma: demand refused " + (r == null ? "no reservation" : r.pm != null ? "backed" : r.vcm.oneToOne ? "one-to-one" : "unmappable"));
                    return false;
                }
                String type = r.attributes.secure() && ((f.address() >>> 12) & 1) == 1 ? "secure" : "ddr";
                PhysMem pm;
                try {
                    pm = vcmm.physAlloc(type, r.length, ChunkPolicy.VCMM);
                } catch (VcmmOutOfMemoryException | IllegalArgumentException e) {
                    trace.add("  handler: no memory for " + r.r + ": " + e.getClass().getSimpleName());
                    return false;
                }
                handedOff(pm);
                MPm m = new MPm(pm);
                pms.add(m);
                r.r.back(pm, 0);
                mappedInModel(r, m, 0);
                trace.add("  handler backs " + r.r + " with " + pm);
                count("dma: demand-backed");
                return true;
            }
        }

        // -----------------------------------------------------------------------------------------
        // checks of devices: counters, crashed state, bytes through every device, stale mappings

        void checkDevices() {
            for (Device d : devices) {
                List<MRes> reach = reachable(d).stream().filter(r -> r.pm != null).toList();
                for (int i = Math.min(2, reach.size()); i > 0; i--) {
                    MRes r = reach.get(rnd.nextInt(reach.size()));
                    long at = r.address + rnd.nextLong(r.length);
                    dma(d, at, (int) Math.min(1 + rnd.nextInt(64), r.address + r.length - at), false, false);
                }
                if (crashed.contains(d) && !reach.isEmpty()) {
                    dma(d, reach.getFirst().address, 8, false, false);
                }
                for (long a : recentlyUnmapped) {
                    dma(d, a, 1, false, false);  // a stale IOTLB entry must not grant it
                }
            }
            recentlyUnmapped.clear();
            for (int i = Math.min(4, writtenPages.size()); i > 0; i--) {
                checkPhysical(writtenPages.get(rnd.nextInt(writtenPages.size())), (int) PAGE);
            }
            for (Device d : devices) {
                DeviceStats s = d.stats();
                MCounters c = counters.get(d);
                String who = d.name() + " " + s;
                assertEquals(crashed.contains(d), d.isCrashed(), () -> who + where());
                assertEquals(crashed.contains(d), s.crashed(), () -> who + where());
                assertEquals(c.crashes, s.crashes(), () -> "crashes of " + who + where());
                assertEquals(c.faults, s.faults(), () -> "faults of " + who + where());
                assertEquals(c.retries, s.retries(), () -> "retries of " + who + where());
                assertEquals(c.failed, s.failed(), () -> "failed of " + who + where());
                assertEquals(c.bytesRead, s.bytesRead(), () -> "bytes read by " + who + where());
                assertEquals(c.bytesWritten, s.bytesWritten(), () -> "bytes written by " + who + where());
            }
        }

        void addAssoc(MAssoc a) {
            assocs.add(a);
            a.vcm.assocs.add(a);
        }

        void addReservation(MRes r) {
            reservations.add(r);
            r.vcm.res.put(r.address, r);
        }

        void deactivateInModel(MAssoc a) {
            MAssoc[] s = slots.get(a.device);
            for (int i = 0; i < 2; i++) {
                if (s[i] == a) {
                    s[i] = null;
                }
            }
            a.active = false;
        }

        void physAlloc(Op.PhysAlloc op) {
            MemoryType m = vcmm.memoryType(op.type());
            long max = PAGE << m.maxOrder();
            List<Long> usable = new ArrayList<>();
            for (long s : op.policy().chunkSizes()) {
                if (s <= max) {
                    usable.add(s);
                }
            }
            long unit = usable.isEmpty() ? PAGE : usable.getLast();
            long rounded = (op.bytes() + unit - 1) & -unit;
            long block = Long.highestOneBit(rounded) == rounded ? rounded : Long.highestOneBit(rounded) << 1;
            boolean impossible = op.bytes() > m.size() || usable.isEmpty() || rounded > m.size() || (op.contiguous() && block > max);
            long inUse = pms.stream().filter(p -> p.pm.memoryType() == m).mapToLong(p -> p.pm.length()).sum();
            Expect e = expect().refuse(impossible, IllegalArgumentException.class)
                .refuse(!impossible, VcmmOutOfMemoryException.class);
            e.maySucceed = !impossible && rounded <= m.size() - inUse;
            PhysAllocOptions options = op.contiguous() ? PhysAllocOptions.CONTIGUOUS : PhysAllocOptions.DEFAULT;
            MClient owner = owner(op.owner());
            PhysMem pm = create(owner, e, () -> vcmm.physAlloc(m, op.bytes(), op.policy(), options),
                k -> k.physAlloc(op.type(), op.bytes(), op.policy(), options));
            if (pm == null) {
                return;
            }
            assertEquals(rounded, pm.length(), () -> pm + where());
            assertTrue(!op.contiguous() || pm.isContiguous(), () -> pm + where());
            for (PhysMem.Chunk c : pm.chunks()) {
                assertTrue(c.pa() >= m.base() && c.end() <= m.base() + m.size(), () -> c + " outside " + m + where());
                assertTrue(usable.contains(c.size()), () -> c + " is not a chunk size of " + op.policy() + where());
                for (MPm o : pms) {
                    for (PhysMem.Chunk oc : o.pm.chunks()) {
                        assertTrue(c.end() <= oc.pa() || oc.end() <= c.pa(), () -> c + " is owned twice: " + o.pm + where());
                    }
                }
            }
            handedOff(pm);
            own(owner, owner == null ? null : owner.pms, new MPm(pm), pms);
        }

        void back(Op.Back b) {
            List<MRes> unbacked = reservations.stream().filter(x -> x.pm == null).toList();
            MRes r = b.fit() && !unbacked.isEmpty() ? unbacked.get(b.res() % unbacked.size()) : pick(reservations, deadReservations, b.res());
            if (r == null) {
                return;
            }
            MPm m;
            long offset = b.page() * PAGE;
            if (b.fit() && r.vcm.oneToOne) {
                m = null;
                for (MPm p : pms) {
                    for (int i = 0; i < p.pm.chunkCount() && m == null; i++) {
                        PhysMem.Chunk c = p.pm.chunks().get(i);
                        if (r.address >= c.pa() && r.address < c.end()) {
                            m = p;
                            long off = 0;
                            for (int j = 0; j < i; j++) {
                                off += p.pm.chunks().get(j).size();
                            }
                            offset = off + (r.address - c.pa());
                        }
                    }
                }
                if (m == null) {
                    m = pick(pms, deadPms, b.pm());
                }
            } else if (b.fit()) {
                List<MPm> longEnough = pms.stream().filter(p -> p.pm.length() >= r.length
                    && (r.attributes.secure() || !p.pm.memoryType().isSecure())).toList();
                m = longEnough.isEmpty() ? pick(pms, deadPms, b.pm()) : longEnough.get(b.pm() % longEnough.size());
                if (m != null && m.pm.length() >= r.length) {
                    offset = offset % (m.pm.length() - r.length + PAGE);
                }
            } else {
                m = pick(pms, deadPms, b.pm());
            }
            if (m == null) {
                return;
            }
            MPm pm = m;
            long off = offset;
            boolean tooShort = pm.pm.length() - off < r.length;
            boolean secureMismatch = pm.pm.memoryType().isSecure() && !r.attributes.secure();
            boolean notIdentity = false;
            if (r.vcm.oneToOne && !tooShort) {
                for (long d = 0; d < r.length && !notIdentity; d += PAGE) {
                    notIdentity = pm.pm.physicalAddress(off + d) != r.address + d;
                }
            }
            boolean unmappable = r.vcm.formats().stream().anyMatch(f -> !canMap(f, r));
            if (expect().refuse(tooShort || secureMismatch || notIdentity || unmappable, IllegalArgumentException.class)
                .refuse(deadReservations.contains(r) || r.pm != null || deadPms.contains(pm), IllegalStateException.class)
                .call(() -> {
                    r.r.back(pm.pm, off);
                    return r;
                }) != null) {
                mappedInModel(r, pm, off);
            }
        }

        void teardown() {
            for (MClient c : List.copyOf(clients)) {
                if (rnd.nextBoolean()) {
                    release(c);
                }
            }
            for (MRes r : List.copyOf(reservations)) {
                if (r.pm != null) {
                    r.r.unback();
                    unbackInModel(r);
                }
                r.r.unreserve();
                reservations.remove(r);
                r.vcm.res.remove(r.address);
            }
            for (MAssoc a : List.copyOf(assocs)) {
                a.a.deactivate();
                deactivateInModel(a);
                a.a.deassoc();
                assocs.remove(a);
                a.vcm.assocs.remove(a);
            }
            for (MVcm v : List.copyOf(vcms)) {
                if (v.orphan) { // the VCMM freed it when its last reservation or association went
                    assertTrue(v.vcm.isFreed(), () -> "orphan " + v.vcm + " not freed once empty" + where());
                } else {
                    v.vcm.free();
                }
                vcms.remove(v);
            }
            for (MPm p : List.copyOf(pms)) {
                p.pm.free();
                pms.remove(p);
            }
            for (MClient c : List.copyOf(clients)) {
                release(c); // owns nothing live any more
            }
        }

        // -----------------------------------------------------------------------------------------
        // checks after every step

        void check() {
            for (MPm m : pms) {
                assertEquals(m.backs.size(), m.pm.backingCount(), () -> m.pm + " backs " + vcmm.reservationsOf(m.pm) + where());
            }
            checkHandles();
            checkTranslations();
            checkReverseMaps();
            checkAccounting();
            checkDevices();
        }

        void checkHandles() {
            List<Vcm> live = vcms.stream().map(v -> v.vcm).toList();
            assertEquals(Set.copyOf(live), Set.copyOf(vcmm.vcms()), () -> "live VCMs" + where());
            for (MVcm v : vcms) {
                assertEquals(v.res.values().stream().map(r -> r.r).toList(), v.vcm.reservations(), () -> "reservations of " + v + where());
                assertEquals(v.formats(), Set.copyOf(v.vcm.formats()), () -> "page-table formats of " + v + where());
                assertEquals(Set.copyOf(v.assocs.stream().map(a -> a.a).toList()), Set.copyOf(v.vcm.associations()),
                    () -> "associations of " + v + where());
                for (MRes r : v.res.values()) {
                    assertSame(r.pm == null ? null : r.pm.pm, r.r.backingMemory(), () -> "backing of " + r.r + where());
                    assertEquals(r.offset, r.r.backingOffset(), () -> "backing offset of " + r.r + where());
                    assertFalse(r.r.isReleased(), where());
                }
            }
            for (MPm m : pms) {
                assertFalse(m.pm.isFreed(), () -> m.pm + where());
            }
            for (MPm m : deadPms) {
                assertTrue(m.pm.isFreed(), () -> m.pm + " should be freed" + where());
            }
            for (MAssoc a : deadAssocs) {
                assertTrue(a.a.isRemoved(), () -> a.a + where());
            }
            for (MRes r : deadReservations) {
                assertTrue(r.r.isReleased() && !r.r.isBacked(), where());
            }
            for (MAssoc a : assocs) {
                assertEquals(a.active, a.a.isActive(), () -> "state of " + a.a + where());
            }
            for (Device d : devices) {
                MAssoc[] s = slots.get(d);
                assertSame(s[0] == null ? null : s[0].a, d.activeLow(), () -> "low slot of " + d + where());
                assertSame(s[1] == null ? null : s[1].a, d.activeHigh(), () -> "high slot of " + d + where());
            }
        }

        void checkTranslations() {
            List<Long> samples = new ArrayList<>();
            for (long[] region : REGIONS) {
                samples.add(region[0] + (rnd.nextLong(region[1]) & -8));
            }
            samples.add(rnd.nextLong());
            samples.add(DDR_BASE + rnd.nextLong(DDR_SIZE));
            for (MVcm v : vcms) {
                samples.add(v.start);
                samples.add(v.start + v.length - 1);
                samples.add(v.start + (rnd.nextLong(v.length) & -8));
            }
            for (MRes r : reservations) {
                samples.add(r.address);
                samples.add(r.address + r.length - 1);
                samples.add(r.address - 1);
                samples.add(r.address + r.length);
                for (int i = r.pm == null ? 1 : 4; i > 0; i--) {
                    samples.add(r.address + rnd.nextLong(r.length));
                }
            }
            for (Device d : devices) {
                for (long a : samples) {
                    checkTranslation(d, a);
                }
            }
            if (vcms.size() >= 2) {
                for (int i = 0; i < 4; i++) {
                    MVcm src = vcms.get(rnd.nextInt(vcms.size()));
                    MVcm dst = vcms.get(rnd.nextInt(vcms.size()));
                    long a = src.res.isEmpty() ? src.start : pickRes(src).address + rnd.nextLong(pickRes(src).length);
                    MRes r = src.at(a);
                    OptionalLong got = vcmm.translate(src.vcm, a, dst.vcm);
                    Set<Long> candidates = new HashSet<>();
                    if (r != null && r.pm != null) {
                        long pa = r.pa(a);
                        for (MRes o : dst.res.values()) {
                            if (o.pm == r.pm && Long.compareUnsigned(r.offset + (a - r.address) - o.offset, o.length) < 0) {
                                candidates.add(o.address + (r.offset + (a - r.address) - o.offset));
                            }
                        }
                        assertTrue(candidates.stream().allMatch(c -> dst.at(c).pa(c) == pa), where());
                    }
                    if (candidates.isEmpty()) {
                        assertTrue(got.isEmpty(), () -> String.format("translate(%s, 0x%x, %s) = %s, expected none%s", src, a, dst, got, where()));
                    } else {
                        assertTrue(got.isPresent() && candidates.contains(got.getAsLong()),
                            () -> String.format("translate(%s, 0x%x, %s) = %s, expected one of %s%s", src, a, dst, got, candidates, where()));
                    }
                }
            }
        }

        MRes pickRes(MVcm v) {
            List<MRes> all = new ArrayList<>(v.res.values());
            return all.get(rnd.nextInt(all.size()));
        }

        void checkTranslation(Device d, long a) {
            MAssoc as = slots.get(d)[slotFor(d, a)];
            MRes r = as == null || (d.format() != null && !d.format().isValidVa(a)) ? null : as.vcm.at(a);
            WalkResult got = d.translate(a);
            count(r == null || r.pm == null ? "translate: fault" : "translate: mapped");
            if (r == null || r.pm == null) {
                assertInstanceOf(WalkResult.PageFault.class, got,
                    () -> String.format("%s translates 0x%x to %s; the model has no mapping (%s)%s", d, a, got, r == null ? "no reservation" : r.r, where()));
                return;
            }
            long pa = r.pa(a);
            boolean secure = pa >= SECURE_BASE && pa < SECURE_BASE + SECURE_SIZE;
            if (secure && !d.isSecure()) {
                WalkResult.PageFault f = assertInstanceOf(WalkResult.PageFault.class, got,
                    () -> String.format("non-secure %s reaches secure pa via 0x%x: %s%s", d, a, got, where()));
                assertEquals(FaultReason.SECURE, f.reason(), where());
                return;
            }
            WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, got,
                () -> String.format("%s: 0x%x should reach pa=0x%x via %s, got %s%s", d, a, pa, r.r, got, where()));
            assertEquals(pa, t.pa(), () -> String.format("%s: 0x%x via %s%s", d, a, r.r, where()));
            if (!r.attributes.write()) {
                assertFalse(d.translate(a, Access.WRITE, false).isMapped(), () -> String.format("%s writes read-only 0x%x%s", d, a, where()));
            } else if (r.attributes.read()) {
                assertTrue(d.translate(a, Access.WRITE, false).isMapped(), () -> String.format("%s cannot write 0x%x%s", d, a, where()));
            }
        }

        void checkReverseMaps() {
            List<Long> pas = new ArrayList<>();
            pas.add(DDR_BASE + rnd.nextLong(DDR_SIZE));
            pas.add(SECURE_BASE + rnd.nextLong(SECURE_SIZE));
            pas.add(SRAM_BASE + rnd.nextLong(SRAM_SIZE));
            for (MPm m : pms) {
                assertEquals(Set.copyOf(m.backs.stream().map(r -> r.r).toList()), Set.copyOf(vcmm.reservationsOf(m.pm)),
                    () -> "reservationsOf " + m.pm + where());
                assertEquals(m.backs.size(), m.pm.backingCount(), () -> "backingCount of " + m.pm + where());
                pas.add(m.pm.physicalAddress(0));
                pas.add(m.pm.physicalAddress(m.pm.length() - 1));
                pas.add(m.pm.physicalAddress(rnd.nextLong(m.pm.length())));
            }
            for (MPm m : deadPms) {
                assertEquals(List.of(), vcmm.reservationsOf(m.pm), where());
                pas.add(m.pm.physicalAddress(rnd.nextLong(m.pm.length())));
            }
            for (MRes r : reservations) {
                if (r.pm != null) {
                    pas.add(r.pa(r.address + rnd.nextLong(r.length)));
                }
            }
            for (long pa : pas) {
                Set<Mapping> expected = new HashSet<>();
                for (MPm m : pms) {
                    long off = offsetOf(m.pm, pa);
                    if (off < 0) {
                        continue;
                    }
                    for (MRes r : m.backs) {
                        if (off >= r.offset && off - r.offset < r.length) {
                            expected.add(new Mapping(r.r, r.address + (off - r.offset)));
                        }
                    }
                }
                List<Mapping> got = vcmm.whoMaps(pa);
                assertEquals(expected, Set.copyOf(got), () -> String.format("whoMaps(0x%x)%s", pa, where()));
                assertEquals(expected.size(), got.size(), () -> String.format("whoMaps(0x%x) has duplicates: %s%s", pa, got, where()));
            }
        }

        static long offsetOf(PhysMem pm, long pa) {
            long off = 0;
            for (PhysMem.Chunk c : pm.chunks()) {
                if (pa >= c.pa() && pa < c.end()) {
                    return off + (pa - c.pa());
                }
                off += c.size();
            }
            return -1;
        }

        void checkAccounting() {
            Map<MemoryType, Long> inUse = new HashMap<>();
            for (MPm m : pms) {
                inUse.merge(m.pm.memoryType(), m.pm.length(), Long::sum);
            }
            for (String name : DATA_TYPES) {
                MemoryType m = vcmm.memoryType(name);
                long expected = inUse.getOrDefault(m, 0L);
                assertEquals(expected, m.stats().allocatedBytes(), () -> name + " allocated bytes == live PhysMem lengths: " + m.stats() + where());
            }
            boolean tables = vcms.stream().anyMatch(v -> !v.formats().isEmpty());
            long pt = vcmm.pageTableMemory().stats().allocatedBytes();
            assertEquals(tables, pt > 0, () -> "page-table memory allocated=" + pt + " while tables exist=" + tables + where());
            long heldBytes = 0;
            for (MVcm v : vcms) {
                for (PageTableFormat f : v.formats()) {
                    heldBytes += v.vcm.table(f).heldBytes();
                }
            }
            long held = heldBytes;
            assertEquals(held, pt, () -> "page-table memory held by the tables == allocated" + where());
        }
    }
}
