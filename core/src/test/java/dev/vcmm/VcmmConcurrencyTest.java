package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.RiscvSv39Format;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The graph under contention, with more threads than this box has cores:
 * <ul>
 *   <li>six threads back and unback their own reservations of one VCM, associated with devices of three
 *   page-table formats (arm64-4k, armv7-short, x86-64), each with its own allocations and a few offsets;</li>
 *   <li>meanwhile one thread translates through every device, and one changes the graph: associates,
 *   activates, deactivates and deassociates a fourth-format device (riscv-sv39, whose table is built from
 *   the mappings of the moment), and reserves, backs, unbacks and unreserves a range of its own in the
 *   same VCM.</li>
 * </ul>
 * While they run, a translation of a thread's address may reach only memory that thread could have mapped
 * there (one of its allocations at one of its offsets), and an address in no reservation never translates.
 * Afterwards every device translates as each thread last left its reservations, the reverse maps agree, no
 * thread saw an exception, and after teardown no page-table page is left.
 *
 * <p>Second: two threads race {@code back} of the same reservation with different allocations; exactly
 * one wins, and the mapping, backing count and reverse map are the winner's.
 *
 * <p>1000 rounds per backer by default (about 3 s); {@code -Dvcmm.concurrency.rounds=N} or 100x with
 * {@code -Dvcmm.long=true}.
 */
class VcmmConcurrencyTest {

    static final long MIB = 1L << 20;
    static final long KIB = 1L << 10;
    static final long[] OFFSETS = {0, 64 * KIB, MIB};
    static final long[] LENGTHS = {64 * KIB, MIB + 64 * KIB, 2 * MIB};
    static final ChunkPolicy[] POLICIES = {ChunkPolicy.VCMM, ChunkPolicy.PAGES_4K, ChunkPolicy.HUGE};
    static final int BACKERS = 6;
    static final int ROUNDS = Integer.getInteger("vcmm.concurrency.rounds", Boolean.getBoolean("vcmm.long") ? 100_000 : 1000);

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().pageTables(32 * MIB).ddr(256 * MIB).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** What a backer last did to one reservation: its backing, or null. */
    record Backing(PhysMem memory, long offset) {
    }

    /** A backer's reservations, its allocations and, per reservation, what it last did. */
    static final class Backer {
        final List<Reservation> reservations = new ArrayList<>();
        final List<PhysMem> memory = new ArrayList<>();
        final List<AtomicReference<Backing>> last = new ArrayList<>();

        boolean owns(long address) {
            return reservations.stream().anyMatch(r -> address - r.address() >= 0 && address - r.address() < r.length());
        }

        /** @return whether {@code pa} is byte {@code delta} of one of this backer's allocations at one of the offsets */
        boolean mayReach(long delta, long pa) {
            for (PhysMem pm : memory) {
                for (long o : OFFSETS) {
                    if (o + delta < pm.length() && pm.physicalAddress(o + delta) == pa) {
                        return true;
                    }
                }
            }
            return false;
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void shouldTranslateAsEachThreadLastLeftItsReservationsAfterConcurrentBackUnbackAndGraphChanges() throws Exception {
        Device a64 = vcmm.device("a64", Arm64Lpae4kFormat.INSTANCE);
        Device v7 = vcmm.device("v7", Armv7ShortFormat.INSTANCE);
        Device x86 = vcmm.device("x86", X86_64Format.INSTANCE);
        Device sv39 = vcmm.device("sv39", RiscvSv39Format.INSTANCE);
        List<Device> all = List.of(a64, v7, x86, sv39);
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 256 * MIB);
        for (Device d : List.of(a64, v7, x86)) {
            vcmm.assoc(vcm, d).activate();
        }
        List<Backer> backers = new ArrayList<>();
        for (int t = 0; t < BACKERS; t++) {
            Backer b = new Backer();
            for (int k = 0; k < LENGTHS.length; k++) {
                b.reservations.add(vcm.reserve(LENGTHS[k], ReservationAttributes.RW, LENGTHS[k] >= MIB ? 2 * MIB : 64 * KIB));
                b.last.add(new AtomicReference<>());
                b.memory.add(vcmm.physAlloc("ddr", 2 * MIB + MIB, POLICIES[(t + k) % POLICIES.length]));
            }
            backers.add(b);
        }
        Reservation fenceLow = vcm.reserve(64 * KIB, ReservationAttributes.RW); // never backed: must never translate
        PhysMem graphMemory = vcmm.physAlloc("ddr", 512 * KIB, ChunkPolicy.VCMM);

        Queue<Throwable> failures = new ConcurrentLinkedQueue<>();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicInteger running = new AtomicInteger(BACKERS);
        AtomicLong translations = new AtomicLong();
        AtomicLong mapped = new AtomicLong();
        AtomicLong graphChanges = new AtomicLong();
        AtomicReference<Reservation> graphReservation = new AtomicReference<>();
        CyclicBarrier start = new CyclicBarrier(BACKERS + 2);
        List<Thread> threads = new ArrayList<>();

        for (int t = 0; t < BACKERS; t++) {
            Backer b = backers.get(t);
            long seed = 1000 + t;
            threads.add(Thread.ofPlatform().name("backer-" + t).start(guard(failures, () -> {
                SplittableRandom rnd = new SplittableRandom(seed);
                start.await();
                try {
                    for (int i = 0; i < ROUNDS && failures.isEmpty(); i++) {
                        int k = rnd.nextInt(b.reservations.size());
                        Reservation r = b.reservations.get(k);
                        if (b.last.get(k).get() != null) {
                            r.unback();
                            b.last.get(k).set(null);
                        } else {
                            PhysMem pm = b.memory.get(rnd.nextInt(b.memory.size()));
                            long offset = OFFSETS[rnd.nextInt(OFFSETS.length)];
                            r.back(pm, offset);
                            b.last.get(k).set(new Backing(pm, offset));
                        }
                    }
                } finally {
                    running.decrementAndGet();
                }
                return null;
            })));
        }

        threads.add(Thread.ofPlatform().name("translator").start(guard(failures, () -> {
            SplittableRandom rnd = new SplittableRandom(7);
            start.await();
            while (running.get() > 0 && failures.isEmpty()) {
                Device d = all.get(rnd.nextInt(all.size()));
                if (rnd.nextInt(8) == 0) {
                    long a = fenceLow.address() + rnd.nextLong(fenceLow.length());
                    WalkResult w = d.translate(a);
                    assertFalse(w.isMapped(), () -> d + " translates 0x" + Long.toHexString(a) + " of a reservation never backed: " + w);
                    continue;
                }
                Backer b = backers.get(rnd.nextInt(backers.size()));
                Reservation r = b.reservations.get(rnd.nextInt(b.reservations.size()));
                long delta = rnd.nextLong(r.length());
                WalkResult w = d.translate(r.address() + delta);
                translations.incrementAndGet();
                if (w instanceof WalkResult.Translation tr) {
                    mapped.incrementAndGet();
                    assertTrue(b.mayReach(delta, tr.pa()), () -> String.format("%s translates 0x%x (byte 0x%x of %s) to pa=0x%x,"
                        + " which its owner never mapped there", d, r.address() + delta, delta, r, tr.pa()));
                }
            }
            return null;
        })));

        threads.add(Thread.ofPlatform().name("graph").start(guard(failures, () -> {
            SplittableRandom rnd = new SplittableRandom(11);
            start.await();
            while (running.get() > 0 && failures.isEmpty()) {
                switch (rnd.nextInt(3)) {
                    case 0 -> {
                        Association a = vcmm.assoc(vcm, sv39, rnd.nextBoolean() ? AssociationMode.WHOLE : AssociationMode.USE_LOW);
                        a.activate();
                        Thread.yield();
                        a.deactivate();
                        a.deassoc();
                    }
                    case 1 -> {
                        Reservation r = vcm.reserve(256 * KIB, ReservationAttributes.RO, 64 * KIB);
                        graphReservation.set(r);
                        r.back(graphMemory, 128 * KIB);
                        Thread.yield();
                        r.unback();
                        graphReservation.set(null);
                        r.unreserve();
                    }
                    default -> {
                        Vcm other = vcmm.createVcm(0x4000_0000L, 16 * MIB);
                        vcmm.assoc(other, x86).deassoc();
                        other.reserve(MIB, ReservationAttributes.RW).unreserve();
                        other.free();
                    }
                }
                graphChanges.incrementAndGet();
            }
            vcmm.assoc(vcm, sv39).activate(); // the fourth format's table, built from the mappings left at the end
            return null;
        })));

        for (Thread t : threads) {
            t.join();
        }
        if (!failures.isEmpty()) {
            AssertionError e = new AssertionError(failures.size() + " thread(s) failed; first: " + failures.peek(), failures.peek());
            failures.stream().skip(1).forEach(e::addSuppressed);
            throw e;
        }
        assertTrue(graphChanges.get() > 0 && mapped.get() > 0, () -> "the threads overlapped: graph changes=" + graphChanges
            + ", translations=" + translations + " (" + mapped + " mapped)");

        // every device translates as each thread last left its reservations
        SplittableRandom rnd = new SplittableRandom(3);
        for (Backer b : backers) {
            for (int k = 0; k < b.reservations.size(); k++) {
                Reservation r = b.reservations.get(k);
                Backing last = b.last.get(k).get();
                assertEquals(last == null ? null : last.memory(), r.backingMemory(), r::toString);
                for (Device d : all) {
                    for (long delta : new long[] {0, r.length() - 1, rnd.nextLong(r.length()), rnd.nextLong(r.length())}) {
                        WalkResult w = d.translate(r.address() + delta);
                        if (last == null) {
                            assertFalse(w.isMapped(), () -> d + " still translates unbacked " + r + ": " + w);
                        } else {
                            long pa = last.memory().physicalAddress(last.offset() + delta);
                            assertEquals(pa, assertInstanceOf(WalkResult.Translation.class, w, () -> d + " at " + r).pa(),
                                () -> d + " at byte " + delta + " of " + r);
                        }
                    }
                }
            }
            for (PhysMem pm : b.memory) {
                List<Reservation> backs = new ArrayList<>();
                for (int k = 0; k < b.reservations.size(); k++) {
                    Backing last = b.last.get(k).get();
                    if (last != null && last.memory() == pm) {
                        backs.add(b.reservations.get(k));
                    }
                }
                assertEquals(backs.size(), pm.backingCount(), pm::toString);
                assertEquals(java.util.Set.copyOf(backs), java.util.Set.copyOf(vcmm.reservationsOf(pm)), pm::toString);
                for (Reservation r : backs) { // a pa maps into every reservation the same allocation backs there
                    long pmOffset = r.backingOffset() + 4096;
                    java.util.Set<Mapping> expected = new java.util.HashSet<>();
                    for (Reservation o : backs) {
                        if (pmOffset >= o.backingOffset() && pmOffset - o.backingOffset() < o.length()) {
                            expected.add(new Mapping(o, o.address() + (pmOffset - o.backingOffset())));
                        }
                    }
                    assertEquals(expected, java.util.Set.copyOf(vcmm.whoMaps(pm.physicalAddress(pmOffset))));
                }
            }
        }
        assertEquals(0, graphMemory.backingCount());
        assertEquals(null, graphReservation.get());

        // teardown: nothing leaks
        for (Backer b : backers) {
            for (Reservation r : b.reservations) {
                if (r.isBacked()) {
                    r.unback();
                }
                r.unreserve();
            }
            b.memory.forEach(PhysMem::free);
        }
        fenceLow.unreserve();
        graphMemory.free();
        for (Association a : vcm.associations()) {
            a.deactivate();
            a.deassoc();
        }
        vcm.free();
        assertEquals(List.of(), vcmm.vcms());
        assertEquals(0, vcmm.pageTableMemory().stats().allocatedBytes(), () -> "page-table pages leaked: " + vcmm.pageTableMemory().stats());
        assertEquals(0, vcmm.memoryType("ddr").stats().allocatedBytes());
        System.out.printf("VcmmConcurrencyTest: %d backers x %d rounds, %d translations (%d mapped), %d graph changes%n",
            BACKERS, ROUNDS, translations.get(), mapped.get(), graphChanges.get());
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void shouldLetExactlyOneOfTwoRacingBacksOfTheSameReservationWin() throws Exception {
        Device a64 = vcmm.device("a64", Arm64Lpae4kFormat.INSTANCE);
        Device v7 = vcmm.device("v7", Armv7ShortFormat.INSTANCE);
        Device x86 = vcmm.device("x86", X86_64Format.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x1000_0000L, 64 * MIB);
        for (Device d : List.of(a64, v7, x86)) {
            vcmm.assoc(vcm, d).activate();
        }
        Reservation r = vcm.reserve(MIB, ReservationAttributes.RW, MIB);
        PhysMem[] memory = {vcmm.physAlloc("ddr", MIB, ChunkPolicy.PAGES_4K), vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM)};
        int rounds = 300;
        CyclicBarrier barrier = new CyclicBarrier(2);
        AtomicReference<Object>[][] outcome = newOutcomes(rounds);
        Queue<Throwable> failures = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 2; t++) {
            int me = t;
            threads.add(Thread.ofPlatform().name("racer-" + t).start(guard(failures, () -> {
                for (int i = 0; i < rounds; i++) {
                    barrier.await(10, TimeUnit.SECONDS); // both race back
                    try {
                        r.back(memory[me]);
                        outcome[i][me].set(Boolean.TRUE);
                    } catch (IllegalStateException lost) {
                        outcome[i][me].set(lost);
                    }
                    barrier.await(10, TimeUnit.SECONDS); // both done: the winner's checks, then it unbacks
                    if (outcome[i][me].get() == Boolean.TRUE) {
                        checkOnlyWinnerMapped(r, memory[me], memory[1 - me], List.of(a64, v7, x86));
                        r.unback();
                    }
                    barrier.await(10, TimeUnit.SECONDS);
                }
                return null;
            })));
        }
        for (Thread t : threads) {
            t.join();
        }
        if (!failures.isEmpty()) {
            AssertionError e = new AssertionError("racer failed: " + failures.peek(), failures.peek());
            failures.stream().skip(1).forEach(e::addSuppressed);
            throw e;
        }
        int[] wins = new int[2];
        for (int i = 0; i < rounds; i++) {
            Object a = outcome[i][0].get();
            Object b = outcome[i][1].get();
            int round = i;
            assertTrue((a == Boolean.TRUE) != (b == Boolean.TRUE), () -> "round " + round + ": exactly one back must win: " + a + " / " + b);
            wins[a == Boolean.TRUE ? 0 : 1]++;
        }
        assertFalse(r.isBacked());
        assertEquals(0, memory[0].backingCount() + memory[1].backingCount());
        System.out.printf("VcmmConcurrencyTest: racing backs won %d / %d%n", wins[0], wins[1]);
        r.unreserve();
        for (PhysMem pm : memory) {
            pm.free();
        }
        for (Association a : vcm.associations()) {
            a.deactivate();
            a.deassoc();
        }
        vcm.free();
        assertEquals(0, vcmm.pageTableMemory().stats().allocatedBytes());
    }

    static void checkOnlyWinnerMapped(Reservation r, PhysMem winner, PhysMem loser, List<Device> devices) {
        assertEquals(winner, r.backingMemory());
        assertEquals(1, winner.backingCount());
        assertEquals(0, loser.backingCount(), "the loser's backing count was given back");
        assertEquals(List.of(r), r.vcm().vcmm().reservationsOf(winner));
        assertEquals(List.of(), r.vcm().vcmm().reservationsOf(loser));
        assertEquals(List.of(), r.vcm().vcmm().whoMaps(loser.physicalAddress(4096)));
        for (Device d : devices) {
            for (long delta : new long[] {0, 4096 * 17 + 5, r.length() - 1}) {
                WalkResult w = d.translate(r.address() + delta);
                assertEquals(winner.physicalAddress(delta), assertInstanceOf(WalkResult.Translation.class, w, () -> d + ": " + w).pa());
            }
        }
    }

    @SuppressWarnings("unchecked")
    static AtomicReference<Object>[][] newOutcomes(int rounds) {
        AtomicReference<Object>[][] out = new AtomicReference[rounds][2];
        for (AtomicReference<Object>[] row : out) {
            row[0] = new AtomicReference<>();
            row[1] = new AtomicReference<>();
        }
        return out;
    }

    interface Body {
        Object run() throws Exception;
    }

    static Runnable guard(Queue<Throwable> failures, Body body) {
        return () -> {
            try {
                body.run();
            } catch (Throwable t) {
                failures.add(t);
            }
        };
    }
}
