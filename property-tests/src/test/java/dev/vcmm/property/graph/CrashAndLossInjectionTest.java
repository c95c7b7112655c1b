package dev.vcmm.property.graph;

import dev.vcmm.Association;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.Client;
import dev.vcmm.Device;
import dev.vcmm.DeviceFaultException;
import dev.vcmm.DeviceKind;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.VcmmOutOfMemoryException;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.RiscvSv39Format;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import dev.vcmm.spi.AllocatorStats;
import org.junit.jupiter.api.Test;

import java.lang.ref.WeakReference;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Random crash and client-loss injection: several clients build VCMs, associations and backed reservations (some
 * backed by another client's memory), devices DMA through them from several threads, and meanwhile the main thread
 * crashes and resets devices (activating their associations again), closes clients, and drops others for the
 * {@link java.lang.ref.Cleaner} to reclaim (forced with {@link System#gc()}, waited for, bounded). Then, with the
 * DMA stopped:
 * <ul>
 *   <li>every memory type accounts for each byte once: {@code free + cached + allocated == total}, and each data
 *   type's allocated bytes equal the lengths of the live allocations;</li>
 *   <li>no physical page is owned twice (a claim map over the chunks of the live allocations);</li>
 *   <li>everything a closed or lost client owned is gone, except memory still backing another client's
 *   reservation (which stays allocated, and is freed when that backing goes);</li>
 *   <li>no device can reach freed memory: every address a device could translate before now faults, or lands where
 *   a live allocation backs an active reservation of the VCM the device has programmed for it, at the right byte;
 *   DMA there faults or succeeds, never reaches anything else;</li>
 * </ul>
 * and after closing the remaining clients every memory type, page tables included, has 0 allocated bytes.
 *
 * <p><b>Replay:</b> the seed is printed; rerun with {@code -Dvcmm.seed=N} (the thread interleaving is not replayed,
 * the choices are). 20 rounds by default, 100x with {@code -Dvcmm.long=true}.
 */
class CrashAndLossInjectionTest {

    static final long PAGE = 4096;
    static final long MIB = 1L << 20;
    static final int CLIENTS = 6;
    static final int DMA_THREADS = 3;
    /** The devices, in pick order. */
    static final List<String> DEVICES = List.of("a64", "a64b", "v7", "x86", "sv39");

    /** What one client made; holds no reference to the {@link Client}, so a dropped client can be reclaimed. */
    static final class Made {
        final String name;
        final List<Vcm> vcms = new ArrayList<>();
        final List<Association> assocs = new ArrayList<>();
        final List<Reservation> reservations = new ArrayList<>();
        final List<PhysMem> memory = new ArrayList<>();
        /** 0 open, 1 closed, 2 lost (dropped for the cleaner) */
        int fate;

        Made(String name) {
            this.name = name;
        }
    }

    /** A device and an address it could translate when the round started. */
    record Target(Device device, long address) { }

    @Test
    void shouldNeverLoseOrDoubleOwnAPageNorLetADeviceReachFreedMemory() throws Exception {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int rounds = Boolean.getBoolean("vcmm.long") ? 2000 : 20;
        System.out.printf("CrashAndLossInjectionTest seed=%d rounds=%d (replay: -Dvcmm.seed=%d)%n", seed, rounds, seed);
        Random seeds = new Random(seed);
        Map<String, Long> totals = new TreeMap<>();
        for (int round = 0; round < rounds; round++) {
            long roundSeed = seeds.nextLong();
            try {
                new Round(roundSeed).run(totals);
            } catch (AssertionError | Exception e) {
                throw new AssertionError("round " + round + " (round seed " + roundSeed + ", run seed " + seed + "): " + e.getMessage(), e);
            }
        }
        System.out.println("CrashAndLossInjectionTest outcomes: " + totals);
    }

    static final class Round {
        final Random rnd;
        final Vcmm vcmm;
        final List<Device> devices = new ArrayList<>();
        final Client[] clients = new Client[CLIENTS];
        final List<Made> made = new ArrayList<>();
        final List<WeakReference<Client>> lost = new ArrayList<>();
        final List<Target> targets = new ArrayList<>();
        final ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        final AtomicLong dmaOk = new AtomicLong();
        final AtomicLong dmaFaulted = new AtomicLong();
        final AtomicLong dmaCrashed = new AtomicLong();
        int crashes;
        int resets;
        int reactivated;
        int closeFailures;

        Round(long seed) {
            this.rnd = new Random(seed);
            this.vcmm = TestGraphs.graph()
                .pageTables(0x0100_0000L, 16 * MIB)
                .ddr(0x4000_0000L, 64 * MIB)
                .memory("sram", 0x3000_0000L, 4 * MIB)
                .device("a64", Arm64Lpae4kFormat.INSTANCE)
                .device("a64b", Arm64Lpae4kFormat.INSTANCE)
                .device("v7", Armv7ShortFormat.INSTANCE)
                .device("x86", DeviceKind.IOMMU, X86_64Format.INSTANCE, true)
                .device("sv39", RiscvSv39Format.INSTANCE)
                .build();
            for (String name : DEVICES) {
                devices.add(vcmm.device(name));
            }
        }

        void run(Map<String, Long> totals) throws Exception {
            try {
                for (int i = 0; i < CLIENTS; i++) {
                    build(i);
                }
                for (Device d : devices) {
                    recordTargets(d);
                }
                inject();
                checkAccounting();
                checkClaims();
                checkReleased();
                checkIsolation();
                // full teardown: what is left goes with the open clients
                for (int i = 0; i < CLIENTS; i++) {
                    if (clients[i] != null) {
                        closeClient(i);
                    }
                }
                checkAccounting();
                for (MemoryType m : vcmm.memoryTypes()) {
                    assertEquals(0, m.stats().allocatedBytes(), () -> m.name() + " has allocated bytes after every client is gone: " + m.stats());
                }
                assertTrue(vcmm.vcms().isEmpty(), () -> "VCMs left: " + vcmm.vcms());
                totals.merge("rounds", 1L, Long::sum);
                totals.merge("dma ok", dmaOk.get(), Long::sum);
                totals.merge("dma faulted", dmaFaulted.get(), Long::sum);
                totals.merge("dma on crashed device", dmaCrashed.get(), Long::sum);
                totals.merge("crashes", (long) crashes, Long::sum);
                totals.merge("resets", (long) resets, Long::sum);
                totals.merge("reactivated", (long) reactivated, Long::sum);
                totals.merge("clients lost", (long) lost.size(), Long::sum);
                totals.merge("close failures", (long) closeFailures, Long::sum);
            } finally {
                vcmm.close();
            }
        }

        /** Client i: one VCM, one or two devices associated and active, a few backed buffers, one on client i-1's memory. */
        void build(int i) {
            Client c = vcmm.client("client" + i);
            clients[i] = c;
            Made m = new Made(c.name());
            made.add(m);
            Vcm vcm = c.createVcm(0x1000_0000L + i * 0x0200_0000L, 32 * MIB);
            m.vcms.add(vcm);
            int first = rnd.nextInt(devices.size());
            for (int k = 0; k < 1 + rnd.nextInt(2); k++) {
                Device d = devices.get((first + k) % devices.size());
                Association a = c.assoc(vcm, d);
                m.assocs.add(a);
                try {
                    a.activate();
                } catch (VcmmBusyException busy) {
                    // another client's VCM is active on d: this one stays inactive until a reset reactivates it
                }
            }
            for (int b = 0; b < 1 + rnd.nextInt(4); b++) {
                long len = (1 + rnd.nextInt(rnd.nextInt(8) == 0 ? 600 : 40)) * PAGE;
                try {
                    PhysMem pm = c.physAlloc(rnd.nextInt(4) == 0 ? "sram" : "ddr", len, rnd.nextBoolean() ? ChunkPolicy.VCMM : ChunkPolicy.PAGES_4K);
                    m.memory.add(pm);
                    Reservation r = c.reserve(vcm, len, rnd.nextInt(5) == 0 ? ReservationAttributes.RO : ReservationAttributes.RW,
                        len >= 2 * MIB ? 2 * MIB : PAGE);
                    m.reservations.add(r);
                    r.back(pm);
                } catch (VcmmOutOfMemoryException full) {
                    // memory or range exhausted: fewer buffers
                }
            }
            if (i > 0) {
                Made prev = made.get(i - 1);
                if (!prev.memory.isEmpty()) {
                    PhysMem shared = prev.memory.get(rnd.nextInt(prev.memory.size()));
                    Reservation r = c.reserve(vcm, shared.length(), ReservationAttributes.RW, PAGE);
                    m.reservations.add(r);
                    r.back(shared);
                }
            }
        }

        void recordTargets(Device d) {
            for (Made m : made) {
                for (Reservation r : m.reservations) {
                    for (long a : new long[] {r.address(), r.address() + r.length() - 1, r.address() + (rnd.nextLong(r.length()) & -8)}) {
                        if (d.translate(a).isMapped()) {
                            targets.add(new Target(d, a));
                        }
                    }
                }
            }
        }

        /** DMA threads run while the main thread crashes, resets, closes and drops. */
        void inject() throws InterruptedException {
            AtomicBoolean stop = new AtomicBoolean();
            List<Thread> threads = new ArrayList<>();
            List<Target> shared = List.copyOf(targets);
            for (int t = 0; t < DMA_THREADS && !shared.isEmpty(); t++) {
                threads.add(Thread.ofPlatform().name("dma-" + t).start(() -> dmaLoop(shared, stop)));
            }
            try {
                List<Integer> order = new ArrayList<>();
                for (int i = 0; i < CLIENTS; i++) {
                    order.add(i);
                }
                Collections.shuffle(order, rnd);
                int victims = 2 + rnd.nextInt(CLIENTS - 2);  // leave at least two clients open
                for (int step = 0; step < 40; step++) {
                    switch (rnd.nextInt(7)) {
                        case 0, 1 -> {
                            Device d = devices.get(rnd.nextInt(devices.size()));
                            d.crash();
                            crashes++;
                        }
                        case 2, 3 -> reset(devices.get(rnd.nextInt(devices.size())));
                        case 4 -> System.gc(); // the cleaner releases dropped clients while the devices DMA
                        default -> {
                            if (victims > 0) {
                                int i = order.get(--victims);
                                if (rnd.nextBoolean()) {
                                    closeClient(i);
                                } else {
                                    loseClient(i);
                                }
                            }
                        }
                    }
                    Thread.sleep(0, 200_000);
                }
                // the DMA and the crashes go on until every dropped client was reclaimed (forced, bounded)
                long deadline = System.nanoTime() + 20_000_000_000L;
                while (System.nanoTime() < deadline && !allLostReleased()) {
                    System.gc();
                    if (rnd.nextBoolean()) {
                        devices.get(rnd.nextInt(devices.size())).crash();
                        crashes++;
                    } else {
                        reset(devices.get(rnd.nextInt(devices.size())));
                    }
                    Thread.sleep(1);
                }
                assertTrue(allLostReleased(), "a dropped client was not reclaimed within 20 s");
            } finally {
                stop.set(true);
                for (Thread t : threads) {
                    t.join(10_000);
                    assertFalse(t.isAlive(), () -> t.getName() + " is stuck");
                }
            }
            if (!failures.isEmpty()) {
                AssertionError e = new AssertionError("DMA threads failed: " + failures.peek());
                failures.forEach(e::addSuppressed);
                throw e;
            }
            for (Device d : devices) {
                reset(d); // leave no device crashed, so that crashed-ness does not hide reachability below
            }
        }

        void dmaLoop(List<Target> shared, AtomicBoolean stop) {
            ThreadLocalRandom r = ThreadLocalRandom.current();
            byte[] buffer = new byte[256];
            while (!stop.get()) {
                Target t = shared.get(r.nextInt(shared.size()));
                int len = 1 + r.nextInt(buffer.length);
                try {
                    if (r.nextBoolean()) {
                        t.device().read(t.address(), buffer, 0, len);
                    } else {
                        r.nextBytes(buffer);
                        t.device().write(t.address(), buffer, 0, len);
                    }
                    dmaOk.incrementAndGet();
                } catch (DeviceFaultException e) {
                    dmaFaulted.incrementAndGet();
                } catch (IllegalStateException e) {
                    if (!e.getMessage().contains("crashed")) {
                        failures.add(e);
                    }
                    dmaCrashed.incrementAndGet();
                } catch (Throwable e) {
                    failures.add(e);
                }
            }
        }

        /** Resets a device and activates again the associations of open clients that fit its free slots. */
        void reset(Device d) {
            d.reset();
            resets++;
            for (Association a : d.associations()) {
                try {
                    if (!a.isActive()) {
                        a.activate();
                        reactivated++;
                    }
                } catch (IllegalStateException refused) { // VcmmBusyException included
                    // another association holds the slot, or the association went with its client meanwhile
                }
            }
        }

        void closeClient(int i) {
            Client c = clients[i];
            clients[i] = null;
            made.get(i).fate = 1;
            try {
                c.close();
            } catch (IllegalStateException e) {
                closeFailures++;
                throw new AssertionError("closing " + c + " failed: " + e.getMessage(), e);
            }
            assertTrue(c.isClosed());
        }

        void loseClient(int i) {
            lost.add(new WeakReference<>(clients[i]));
            clients[i] = null; // the only strong reference: the cleaner reclaims it
            made.get(i).fate = 2;
        }

        boolean allLostReleased() {
            for (WeakReference<Client> w : lost) {
                if (w.get() != null) {
                    return false;
                }
            }
            for (Made m : made) {
                // the cleaner releases after the reference is cleared: wait until its reservations are gone too
                if (m.fate == 2 && m.reservations.stream().anyMatch(r -> !r.isReleased())) {
                    return false;
                }
                if (m.fate == 2 && m.assocs.stream().anyMatch(a -> !a.isRemoved())) {
                    return false;
                }
                // ... and its VCMs and memory, the last steps (here nobody else reserves in its VCMs)
                if (m.fate == 2 && m.vcms.stream().anyMatch(v -> !v.isFreed())) {
                    return false;
                }
                if (m.fate == 2 && m.memory.stream().anyMatch(pm -> !pm.isFreed() && pm.backingCount() == 0)) {
                    return false;
                }
            }
            return true;
        }

        // -----------------------------------------------------------------------------------------
        // checks

        List<PhysMem> liveMemory() {
            List<PhysMem> out = new ArrayList<>();
            for (Made m : made) {
                for (PhysMem pm : m.memory) {
                    if (!pm.isFreed()) {
                        out.add(pm);
                    }
                }
            }
            return out;
        }

        void checkAccounting() {
            List<PhysMem> live = liveMemory();
            for (MemoryType m : vcmm.memoryTypes()) {
                AllocatorStats s = m.stats();
                assertEquals(s.totalBytes(), s.freeBytes() + s.cachedBytes() + s.allocatedBytes(), () -> m.name() + ": free + cached + allocated != total: " + s);
                if (m != vcmm.pageTableMemory()) {
                    long inUse = live.stream().filter(pm -> pm.memoryType() == m).mapToLong(PhysMem::length).sum();
                    assertEquals(inUse, s.allocatedBytes(), () -> m.name() + ": allocated bytes != live allocations " + live + ": " + s);
                }
            }
        }

        /** An independent claim map: each page of each live allocation is claimed once. */
        void checkClaims() {
            TreeMap<Long, PhysMem.Chunk> claims = new TreeMap<>();
            Map<PhysMem.Chunk, PhysMem> owner = new java.util.HashMap<>();
            for (PhysMem pm : liveMemory()) {
                for (PhysMem.Chunk c : pm.chunks()) {
                    Map.Entry<Long, PhysMem.Chunk> below = claims.floorEntry(c.end() - 1);
                    if (below != null && below.getValue().end() > c.pa()) {
                        fail(c + " of " + pm + " is also owned by " + owner.get(below.getValue()));
                    }
                    claims.put(c.pa(), c);
                    owner.put(c, pm);
                }
            }
        }

        /** What closed and lost clients owned is gone, but memory still backing a live reservation. */
        void checkReleased() {
            for (Made m : made) {
                if (m.fate == 0) {
                    continue;
                }
                for (Reservation r : m.reservations) {
                    assertTrue(r.isReleased() && !r.isBacked(), () -> m.name + " left " + r);
                }
                for (Association a : m.assocs) {
                    assertTrue(a.isRemoved() && !a.isActive(), () -> m.name + " left " + a);
                }
                for (Vcm v : m.vcms) {
                    assertTrue(v.isFreed(), () -> m.name + (m.fate == 1 ? " (closed)" : " (lost)") + " left " + v); // nobody else reserves in it here
                }
                for (PhysMem pm : m.memory) {
                    boolean backsLive = pm.backingCount() > 0;
                    assertEquals(!backsLive, pm.isFreed(), () -> m.name + ": " + pm + " backs " + vcmm.reservationsOf(pm));
                    for (Reservation r : vcmm.reservationsOf(pm)) {
                        assertFalse(r.isReleased(), () -> pm + " backs released " + r);
                    }
                }
            }
        }

        /** Every address a device could translate before now faults or lands where a live allocation backs it. */
        void checkIsolation() {
            byte[] one = new byte[1];
            for (Target t : targets) {
                Device d = t.device();
                WalkResult w = d.translate(t.address());
                Reservation backing = expectedBacking(d, t.address());
                if (w instanceof WalkResult.Translation tr) {
                    assertTrue(backing != null, () -> String.format("%s reaches pa=0x%x at 0x%x, which no active reservation of it maps",
                        d.name(), tr.pa(), t.address()));
                    PhysMem pm = backing.backingMemory();
                    assertFalse(pm.isFreed(), () -> d.name() + " reaches freed " + pm);
                    long pa = pm.physicalAddress(backing.backingOffset() + (t.address() - backing.address()));
                    assertEquals(pa, tr.pa(), () -> String.format("%s: 0x%x via %s", d.name(), t.address(), backing));
                    d.read(t.address(), one, 0, 1); // and DMA gets there too
                } else {
                    assertTrue(backing == null, () -> String.format("%s: 0x%x faults, but %s backs it", d.name(), t.address(), backing));
                    try {
                        d.read(t.address(), one, 0, 1);
                        fail(String.format("%s reads 0x%x, which does not translate (a stale IOTLB entry?)", d.name(), t.address()));
                    } catch (DeviceFaultException expected) {
                        // isolated
                    }
                }
            }
        }

        /**
         * @return the live, backed reservation of the VCM active on {@code d} for {@code address}, or null (every VCM
         *         here lies low, so the low slot translates it)
         */
        Reservation expectedBacking(Device d, long address) {
            Association a = d.activeLow();
            if (a != null && a.isActive() && !a.vcm().isFreed()) {
                Reservation r = a.vcm().reservationAt(address);
                if (r != null && r.isBacked() && !r.isReleased() && !r.backingMemory().isFreed()) {
                    return r;
                }
            }
            return null;
        }
    }
}
