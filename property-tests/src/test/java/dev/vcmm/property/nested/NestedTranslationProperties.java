package dev.vcmm.property.nested;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceFault;
import dev.vcmm.DeviceFaultException;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Arm64Stage2Format;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.RiscvSv48Format;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based property of nested translation: a model of two maps composed, stage 1 (guest page to IPA page) and
 * stage 2 (IPA page to physical page). Generated sequences back and unback host reservations (stage 2: the guest's
 * RAM comes and goes), back guest reservations with memory the host maps (refused, with nothing changed, when the
 * host does not map it) and unback them, and DMA through the device; after every step the device's translation of
 * sampled guest pages equals the composition, or faults in the stage the model says (stage 1: the guest maps
 * nothing; stage 2: the IPA is not mapped, and the fault names it), and every DMA lands where the composition says
 * or faults likewise, so no combined IOTLB entry outlives an unback in either stage.
 *
 * <p><b>Replay:</b> prints its seed; rerun with {@code -Dvcmm.seed=N}. 80 sequences by default, 100x with
 * {@code -Dvcmm.long=true}.
 */
class NestedTranslationProperties {

    static final long MIB = 1L << 20;
    static final long PAGE = 4096;
    static final int HOST_SLOTS = 4;
    static final int HOST_PAGES = 16;
    static final int GUEST_SLOTS = 4;
    static final int GUEST_PAGES = 8;
    static final long GUEST = 0x10_0000_0000L;
    static final long POOL_IPA = 0x1000_0000L;
    static final ReservationAttributes RW_USER = ReservationAttributes.RW.withUser(true);

    /** Slot {@code i}'s IPA: odd slots 4 KiB off a 64 KiB boundary (single pages), even ones aligned (runs). */
    static long hostIpa(int i) {
        return 0x4000_0000L + i * MIB + (i % 2) * PAGE;
    }

    static long guestVa(int j) {
        return GUEST + j * MIB;
    }

    sealed interface Op {
        record HostBack(int slot) implements Op { }

        record HostUnback(int slot) implements Op { }

        record GuestBack(int slot, int hostSlot, int offsetPages) implements Op { }

        record GuestUnback(int slot) implements Op { }

        record Dma(int slot, int page, boolean write) implements Op { }
    }

    static Gen<int[]> ints(int n) {
        return Generate.intArrays(Generate.constant(n), Generate.range(0, 9999));
    }

    static final Gen<Op> HOST_BACK = ints(1).map(a -> new Op.HostBack(a[0] % HOST_SLOTS));
    static final Gen<Op> HOST_UNBACK = ints(1).map(a -> new Op.HostUnback(a[0] % HOST_SLOTS));
    static final Gen<Op> GUEST_BACK = ints(3).map(a -> new Op.GuestBack(a[0] % GUEST_SLOTS, a[1] % HOST_SLOTS,
        a[2] % (HOST_PAGES - GUEST_PAGES + 2))); // one offset in ten sticks out of the host's reservation
    static final Gen<Op> GUEST_UNBACK = ints(1).map(a -> new Op.GuestUnback(a[0] % GUEST_SLOTS));
    static final Gen<Op> DMA = ints(3).map(a -> new Op.Dma(a[0] % GUEST_SLOTS, a[1] % GUEST_PAGES, a[2] % 2 == 0));

    @Test
    void shouldTranslateAsTheTwoMapsComposed() {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int n = Boolean.getBoolean("vcmm.long") ? 8000 : 80;
        System.out.printf("NestedTranslationProperties seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n", seed, n, seed);
        Map<String, Integer> stats = new ConcurrentHashMap<>();
        Gen<List<Op>> sequences = lists().of(Generate.frequency(List.of(Pair.of(5, HOST_BACK), Pair.of(3, HOST_UNBACK),
            Pair.of(6, GUEST_BACK), Pair.of(3, GUEST_UNBACK), Pair.of(8, DMA)))).ofSizeBetween(1, 40);
        qt().withFixedSeed(seed).withExamples(n).withShrinkCycles(50)
            .forAll(sequences)
            .checkAssert(ops -> run(ops, seed, stats));
        System.out.println("NestedTranslationProperties outcomes: " + new TreeMap<>(stats));
        assertTrue(stats.getOrDefault("translated", 0) > 0 && stats.getOrDefault("stage2", 0) > 0
            && stats.getOrDefault("stage1", 0) > 0 && stats.getOrDefault("refused", 0) > 0, stats.toString());
    }

    /** The system and the model of one sequence. */
    static final class World {
        final Vcmm vcmm;
        final Vcm host;
        final Vcm guest;
        final Device device;
        final Reservation[] hostRes = new Reservation[HOST_SLOTS];
        final PhysMem[] hostMem = new PhysMem[HOST_SLOTS];
        final Reservation[] guestRes = new Reservation[GUEST_SLOTS];
        /** Stage 2: IPA page -> physical page. */
        final Map<Long, Long> stage2 = new HashMap<>();
        /** Stage 1: guest page -> IPA page. */
        final Map<Long, Long> stage1 = new HashMap<>();
        final Map<String, Integer> stats;

        World(PageTableFormat format, Map<String, Integer> stats) {
            this.stats = stats;
            vcmm = TestGraphs.graph().ddr(0x8000_0000L, 64 * MIB).pageTables(16 * MIB).build();
            host = vcmm.createVcm(0, 1L << 36);
            Reservation pool = host.reserveAt(POOL_IPA, MIB, RW_USER).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K));
            guest = vcmm.createGuestVcm(host, Arm64Stage2Format.INSTANCE, pool, GUEST, GUEST_SLOTS * MIB);
            device = vcmm.device("dev", format);
            vcmm.assoc(guest, device).activate();
            for (int i = 0; i < HOST_SLOTS; i++) {
                hostRes[i] = host.reserveAt(hostIpa(i), HOST_PAGES * PAGE, RW_USER);
            }
            for (int j = 0; j < GUEST_SLOTS; j++) {
                guestRes[j] = guest.reserveAt(guestVa(j), GUEST_PAGES * PAGE, ReservationAttributes.RW);
            }
        }

        void count(String what) {
            stats.merge(what, 1, Integer::sum);
        }

        void apply(Op op) {
            switch (op) {
                case Op.HostBack b -> {
                    if (hostRes[b.slot()].isBacked()) {
                        assertThrows(IllegalStateException.class, () -> hostRes[b.slot()].back(hostMem[b.slot()]));
                        return;
                    }
                    PhysMem pm = vcmm.physAlloc("ddr", HOST_PAGES * PAGE, ChunkPolicy.PAGES_4K);
                    hostRes[b.slot()].back(pm);
                    hostMem[b.slot()] = pm;
                    for (int p = 0; p < HOST_PAGES; p++) {
                        stage2.put(hostIpa(b.slot()) / PAGE + p, pm.physicalAddress(p * PAGE) / PAGE);
                    }
                }
                case Op.HostUnback u -> {
                    if (!hostRes[u.slot()].isBacked()) {
                        return;
                    }
                    hostRes[u.slot()].unback();
                    for (int p = 0; p < HOST_PAGES; p++) {
                        stage2.remove(hostIpa(u.slot()) / PAGE + p);
                    }
                }
                case Op.GuestBack b -> {
                    Reservation r = guestRes[b.slot()];
                    if (r.isBacked()) {
                        return;
                    }
                    boolean given = hostRes[b.hostSlot()].isBacked() && b.offsetPages() + GUEST_PAGES <= HOST_PAGES;
                    if (!given) {
                        // memory the host does not map (or not all of it): refused, nothing changed
                        PhysMem pm = hostMem[b.hostSlot()] != null ? hostMem[b.hostSlot()]
                            : vcmm.physAlloc("ddr", HOST_PAGES * PAGE, ChunkPolicy.PAGES_4K);
                        if (hostMem[b.hostSlot()] == null) {
                            hostMem[b.hostSlot()] = pm; // kept for later backs of the host slot
                        }
                        assertThrows(IllegalArgumentException.class, () -> r.back(pm, b.offsetPages() * PAGE));
                        assertTrue(!r.isBacked(), "a refused back changed nothing");
                        count("refused");
                        return;
                    }
                    r.back(hostMem[b.hostSlot()], b.offsetPages() * PAGE);
                    for (int p = 0; p < GUEST_PAGES; p++) {
                        stage1.put(guestVa(b.slot()) / PAGE + p, hostIpa(b.hostSlot()) / PAGE + b.offsetPages() + p);
                    }
                }
                case Op.GuestUnback u -> {
                    if (!guestRes[u.slot()].isBacked()) {
                        return;
                    }
                    guestRes[u.slot()].unback();
                    for (int p = 0; p < GUEST_PAGES; p++) {
                        stage1.remove(guestVa(u.slot()) / PAGE + p);
                    }
                }
                case Op.Dma d -> dma(guestVa(d.slot()) + d.page() * PAGE + 8 * d.page(), d.write());
            }
        }

        /** A DMA through the IOTLB: lands where the composition says, or faults in the stage the model says. */
        void dma(long va, boolean write) {
            Long ipaPage = stage1.get(va / PAGE);
            Long paPage = ipaPage == null ? null : stage2.get(ipaPage);
            byte[] b = new byte[8];
            if (paPage == null) {
                DeviceFault f = assertThrows(DeviceFaultException.class, () -> {
                    if (write) {
                        device.write(va, b, 0, 8);
                    } else {
                        device.read(va, b, 0, 8);
                    }
                }, "va=0x" + Long.toHexString(va) + " must fault").fault();
                assertEquals(ipaPage == null ? 1 : 2, f.stage(), f.toString());
                return;
            }
            long pa = paPage * PAGE + (va & (PAGE - 1));
            if (write) {
                long v = System.nanoTime();
                for (int i = 0; i < 8; i++) {
                    b[i] = (byte) (v >>> (8 * i));
                }
                device.write(va, b, 0, 8);
                byte[] got = new byte[8];
                vcmm.memoryType("ddr").memory().copyOut(pa, got, 0, 8);
                assertEquals(java.util.Arrays.toString(b), java.util.Arrays.toString(got), "the write landed at the composed pa");
            } else {
                device.read(va, b, 0, 8);
                byte[] want = new byte[8];
                vcmm.memoryType("ddr").memory().copyOut(pa, want, 0, 8);
                assertEquals(java.util.Arrays.toString(want), java.util.Arrays.toString(b));
            }
        }

        /** The device's translation of every guest page equals the model's composition, or its fault's stage. */
        void check() {
            for (int j = 0; j < GUEST_SLOTS; j++) {
                for (int p = 0; p < GUEST_PAGES; p += 3) {
                    long va = guestVa(j) + p * PAGE + 0x123;
                    Long ipaPage = stage1.get(va / PAGE);
                    Long paPage = ipaPage == null ? null : stage2.get(ipaPage);
                    WalkResult r = device.translate(va);
                    if (paPage != null) {
                        if (!(r instanceof WalkResult.Translation t)) {
                            fail("va=0x" + Long.toHexString(va) + ": expected pa page 0x" + Long.toHexString(paPage) + ", got " + r);
                            return;
                        }
                        assertEquals(paPage * PAGE + 0x123, t.pa(), "va=0x" + Long.toHexString(va));
                        count("translated");
                    } else if (!(r instanceof WalkResult.PageFault f)) {
                        fail("va=0x" + Long.toHexString(va) + " must fault, got " + r);
                    } else if (ipaPage == null) {
                        assertEquals(1, f.stage(), f.toString());
                        count("stage1");
                    } else {
                        assertEquals(2, f.stage(), f.toString());
                        assertEquals(-1, f.stage1Level(), f.toString());
                        assertEquals(ipaPage * PAGE + 0x123, f.ipa(), f.toString());
                        count("stage2");
                    }
                }
            }
        }
    }

    static void run(List<Op> ops, long seed, Map<String, Integer> stats) {
        PageTableFormat format = switch ((int) Math.floorMod(seed + ops.size(), 3)) {
            case 0 -> Arm64Lpae4kFormat.INSTANCE;
            case 1 -> X86_64Format.INSTANCE;
            default -> RiscvSv48Format.INSTANCE;
        };
        World w = new World(format, stats);
        try {
            w.check();
            for (Op op : ops) {
                w.apply(op);
                w.check();
            }
        } finally {
            w.vcmm.close();
        }
    }
}
