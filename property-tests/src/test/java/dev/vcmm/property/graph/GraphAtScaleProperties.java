package dev.vcmm.property.graph;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Mapping;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The reverse map at scale, against a model: a VCMM holding {@value #LIVE} live backed buffers ({@value #LIVE_LONG}
 * with {@code -Dvcmm.long=true}) in two VCMs (one buffer in ten also backs a reservation of the second VCM), then a
 * random walk of {@code physAlloc}, {@code reserve}, {@code back} (at an offset, sometimes sharing an allocation),
 * {@code unback}, {@code unreserve} and {@code free}, including refused calls (free or unreserve of something still
 * backed, double free, a back of a backed reservation), each of which must throw and change nothing.
 *
 * <p>The model is the set of backings: reservation to (allocation, offset), and allocation to the reservations it
 * backs. After every step the allocations and reservations the step touched, plus {@value #SAMPLES} random live
 * allocations, are checked exactly: {@link Vcmm#reservationsOf} equals the model's set, and {@link Vcmm#whoMaps} of
 * an address in every chunk equals the model's mappings of it. Every {@code fullEvery} steps, and at the start and
 * the end, every live allocation is checked. Finally everything is undone and every page ever handed out has no
 * mapping, no reservation is left, and the allocator is whole.
 *
 * <p>Not QuickTheories: a failing walk over 100,000 buffers would not shrink usefully. The seed is printed; replay
 * with {@code -Dvcmm.seed=N}.
 */
class GraphAtScaleProperties {

    static final int LIVE = 2_000;
    static final int LIVE_LONG = 100_000;
    static final int SAMPLES = 8;
    static final long KIB = 1024;
    static final long BUFFER = 16 * KIB;

    final boolean longRun = Boolean.getBoolean("vcmm.long");
    final int live = longRun ? LIVE_LONG : LIVE;
    final int steps = longRun ? 50_000 : 4_000;
    final int fullEvery = longRun ? 10_000 : 500;

    /** The model: what each reservation is backed by, and what each allocation backs. */
    record Backing(PhysMem pm, long offset) {
    }

    final Map<Reservation, Backing> backing = new IdentityHashMap<>();
    final Map<PhysMem, Set<Reservation>> backs = new IdentityHashMap<>();
    final List<PhysMem> pms = new ArrayList<>();
    final List<Reservation> reservations = new ArrayList<>();
    final Set<Long> everHandedOut = new HashSet<>();

    Vcmm vcmm;
    Vcm a;
    Vcm b;
    SplittableRandom rnd;

    @Test
    void shouldAgreeWithTheModelWithManyLiveBuffers() {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        System.out.printf("GraphAtScaleProperties seed=%d live=%d steps=%d (replay: -Dvcmm.seed=%d)%n", seed, live, steps, seed);
        rnd = new SplittableRandom(seed);
        long ddr = Long.highestOneBit(live * BUFFER * 4) * 2;
        vcmm = TestGraphs.graph()
            .memory(MemoryType.builder(TestGraphs.DDR).base(1L << 40).size(ddr).zeroOnHandoff(false))
            .pageTables(TestGraphs.PT_BASE, 64 * TestGraphs.MIB)
            .device("gpu", Arm64Lpae4kFormat.INSTANCE)
            .build();
        try {
            a = vcmm.createVcm(1L << 32, ddr);
            b = vcmm.createVcm(1L << 32, ddr);
            vcmm.assoc(a, vcmm.device("gpu")).activate();
            populate();
            checkAll("after populating");
            Map<String, Integer> outcomes = new java.util.TreeMap<>();
            for (int step = 1; step <= steps; step++) {
                String what = step(outcomes);
                if (step % fullEvery == 0) {
                    checkAll("step " + step + " (" + what + ")");
                }
            }
            checkAll("at the end of the walk");
            System.out.println("GraphAtScaleProperties outcomes: " + outcomes);
            teardown();
        } finally {
            vcmm.close();
        }
    }

    private void populate() {
        for (int i = 0; i < live; i++) {
            PhysMem pm = alloc(BUFFER);
            Reservation r = reserve(a, BUFFER);
            back(r, pm, 0);
            if (i % 10 == 0) {
                back(reserve(b, BUFFER), pm, 0);
            }
        }
    }

    /** One random operation, refused ones included; returns its name. */
    private String step(Map<String, Integer> outcomes) {
        int dice = rnd.nextInt(100);
        List<PhysMem> touchedPms = new ArrayList<>();
        String what;
        if (dice < 12) {
            what = "alloc";
            touchedPms.add(alloc(rnd.nextBoolean() ? BUFFER : 4 * BUFFER));
        } else if (dice < 24) {
            what = "reserve";
            reserve(rnd.nextBoolean() ? a : b, rnd.nextBoolean() ? BUFFER : 2 * BUFFER);
        } else if (dice < 46) {
            Reservation r = rnd.nextInt(5) == 0 ? any(reservations) : anyWhere(reservations, false);
            PhysMem pm = any(pms);
            if (r == null || pm == null) {
                return "none";
            }
            long room = pm.length() - r.length();
            Backing was = backing.get(r);
            if (was != null) {
                what = "back of a backed reservation (refused)";
                // arguments are checked before state: a short allocation is refused as such even here
                Class<? extends RuntimeException> expected = room < 0 ? IllegalArgumentException.class : IllegalStateException.class;
                assertThrows(expected, () -> r.back(pm));
                touchedPms.add(was.pm());
            } else if (room < 0) {
                what = "back of a short allocation (refused)";
                assertThrows(IllegalArgumentException.class, () -> r.back(pm));
            } else {
                what = "back";
                back(r, pm, rnd.nextLong(room / (4 * KIB) + 1) * 4 * KIB);
            }
            touchedPms.add(pm);
        } else if (dice < 68) {
            Reservation r = anyWhere(reservations, true);
            if (r == null) {
                return "none";
            }
            what = "unback";
            Backing was = backing.remove(r);
            r.unback();
            backs.get(was.pm()).remove(r);
            touchedPms.add(was.pm());
        } else if (dice < 80) {
            Reservation r = rnd.nextInt(5) == 0 ? any(reservations) : anyWhere(reservations, false);
            if (r == null) {
                return "none";
            }
            Backing was = backing.get(r);
            if (was != null) {
                what = "unreserve of a backed reservation (refused)";
                assertThrows(VcmmBusyException.class, r::unreserve);
                touchedPms.add(was.pm());
            } else {
                what = "unreserve";
                r.unreserve();
                remove(reservations, r);
            }
        } else if (dice < 97) {
            PhysMem pm = rnd.nextInt(5) == 0 ? any(pms) : anyIdle();
            if (pm == null) {
                return "none";
            }
            if (!backs.get(pm).isEmpty()) {
                what = "free of a backing allocation (refused)";
                assertThrows(IllegalStateException.class, pm::free);
                touchedPms.add(pm);
            } else {
                what = "free";
                pm.free();
                backs.remove(pm);
                remove(pms, pm);
                checkUnmapped(pm);
            }
        } else {
            what = "double free (refused)";
            PhysMem pm = vcmm.physAlloc(TestGraphs.DDR, BUFFER, ChunkPolicy.PAGES_4K);
            pm.free();
            assertThrows(IllegalStateException.class, pm::free);
        }
        outcomes.merge(what, 1, Integer::sum);
        for (PhysMem pm : touchedPms) {
            check(pm, what);
        }
        for (int i = 0; i < SAMPLES && !pms.isEmpty(); i++) {
            check(any(pms), what + " (sample)");
        }
        return what;
    }

    private PhysMem alloc(long length) {
        PhysMem pm = vcmm.physAlloc(TestGraphs.DDR, length, ChunkPolicy.PAGES_4K);
        pms.add(pm);
        backs.put(pm, java.util.Collections.newSetFromMap(new IdentityHashMap<>()));
        for (PhysMem.Chunk c : pm.chunks()) {
            everHandedOut.add(c.pa());
        }
        return pm;
    }

    private Reservation reserve(Vcm vcm, long length) {
        Reservation r = vcm.reserve(length, ReservationAttributes.RW);
        reservations.add(r);
        return r;
    }

    private void back(Reservation r, PhysMem pm, long offset) {
        r.back(pm, offset);
        backing.put(r, new Backing(pm, offset));
        backs.get(pm).add(r);
    }

    /** Checks one live allocation: reservationsOf, and whoMaps of a random address in each chunk. */
    private void check(PhysMem pm, String after) {
        Set<Reservation> expected = backs.get(pm);
        assertEquals(expected, identitySet(vcmm.reservationsOf(pm)), () -> "reservationsOf(" + pm + ") after " + after);
        for (int c = 0; c < pm.chunkCount(); c++) {
            long off = c * 4 * KIB + rnd.nextLong(4 * KIB);
            long pa = pm.physicalAddress(off);
            Set<Mapping> want = new HashSet<>();
            for (Reservation r : expected) {
                long at = off - backing.get(r).offset();
                if (at >= 0 && at < r.length()) {
                    want.add(new Mapping(r, r.address() + at));
                }
            }
            assertEquals(want, new HashSet<>(vcmm.whoMaps(pa)), () -> "whoMaps(0x" + Long.toHexString(pa) + ") after " + after);
        }
    }

    private void checkUnmapped(PhysMem pm) {
        assertEquals(List.of(), vcmm.reservationsOf(pm), () -> "a freed allocation backs nothing: " + pm);
        for (PhysMem.Chunk c : pm.chunks()) {
            assertEquals(List.of(), vcmm.whoMaps(c.pa()), () -> "whoMaps of a freed chunk " + c);
        }
    }

    private void checkAll(String when) {
        for (PhysMem pm : pms) {
            check(pm, when);
        }
        int backed = 0;
        for (Reservation r : reservations) {
            Backing m = backing.get(r);
            assertEquals(m != null, r.isBacked(), () -> r + " " + when);
            if (m != null) {
                backed++;
                assertTrue(r.backingMemory() == m.pm() && r.backingOffset() == m.offset(), () -> r + " " + when);
            }
        }
        assertEquals(backing.size(), backed, when);
    }

    /** Undoes everything, then: no page ever handed out is mapped, and the allocator is whole. */
    private void teardown() {
        for (Reservation r : reservations) {
            if (backing.remove(r) != null) {
                r.unback();
            }
            r.unreserve();
        }
        for (PhysMem pm : pms) {
            pm.free();
        }
        for (long pa : everHandedOut) {
            assertEquals(List.of(), vcmm.whoMaps(pa), () -> "whoMaps(0x" + Long.toHexString(pa) + ") after everything was freed");
        }
        MemoryType ddr = vcmm.memoryType(TestGraphs.DDR);
        assertEquals(0, ddr.stats().allocatedBytes(), "the allocator is whole: nothing allocated");
        var stats = ddr.stats();
        assertEquals(ddr.size(), stats.freeBytes() + stats.cachedBytes(),
            () -> "the allocator is whole: every byte free (or parked in this thread's cache): " + stats);
        assertEquals(List.of(), a.reservations());
        assertEquals(List.of(), b.reservations());
    }

    private <T> T any(List<T> list) {
        return list.isEmpty() ? null : list.get(rnd.nextInt(list.size()));
    }

    /** A random reservation that is backed ({@code wantBacked}) or not, or null after a few misses. */
    private Reservation anyWhere(List<Reservation> list, boolean wantBacked) {
        for (int tries = 0; tries < 16 && !list.isEmpty(); tries++) {
            Reservation r = any(list);
            if (backing.containsKey(r) == wantBacked) {
                return r;
            }
        }
        return null;
    }

    /** A random allocation that backs nothing, or any one after a few misses. */
    private PhysMem anyIdle() {
        PhysMem pm = any(pms);
        for (int tries = 0; tries < 16 && pm != null && !backs.get(pm).isEmpty(); tries++) {
            pm = any(pms);
        }
        return pm;
    }

    /** Removes {@code x} by swapping the last element into its place: O(1) once found. */
    private static <T> void remove(List<T> list, T x) {
        int i = list.indexOf(x);
        T last = list.removeLast();
        if (i < list.size()) {
            list.set(i, last);
        }
    }

    private static Set<Reservation> identitySet(List<Reservation> list) {
        Set<Reservation> s = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
        s.addAll(list);
        return s;
    }
}
