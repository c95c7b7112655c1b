package dev.vcmm.jcstress;

import dev.vcmm.ffm.LockFreeBuddyAllocator;
import dev.vcmm.spi.AllocatorStats;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Arbiter;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.IIII_Result;

/**
 * Unmark and publish in one word: an 8 KiB pool is split into its two 4 KiB buddies, both allocated; then
 * two threads free the same block {@code a} at once. A free's first compare-and-set both clears the
 * block's ALLOCATED bit and sets its FREE bit (its buddy is allocated, so there is no merge), in the block
 * word that holds both buddies. Whichever CAS lands first, the other thread re-reads the word, finds the
 * ALLOCATED bit clear and reports a double free without changing anything: exactly one free succeeds, and
 * afterwards {@code a} is free once and {@code b} is still allocated. Uses only the public API of
 * {@link LockFreeBuddyAllocator} (no thread caches).
 *
 * <p>Results: r1, r2 = 1 if that actor's free threw {@link IllegalStateException}, else 0; r3 = free order-0
 * blocks; r4 = allocated 4 KiB pages.
 */
@JCStressTest
@Outcome(id = "0, 1, 1, 1", expect = Expect.ACCEPTABLE, desc = "The first actor's free won; the second saw the block unmarked and reported it.")
@Outcome(id = "1, 0, 1, 1", expect = Expect.ACCEPTABLE, desc = "The second actor's free won; the first saw the block unmarked and reported it.")
@Outcome(id = "0, 0, .*", expect = Expect.FORBIDDEN, desc = "Both frees succeeded: the block was freed twice.")
@Outcome(id = "1, 1, .*", expect = Expect.FORBIDDEN, desc = "Both frees failed: the allocated block was lost.")
@Outcome(expect = Expect.FORBIDDEN, desc = "A block lost, merged with an allocated buddy, or counted twice.")
@State
public class BuddyDoubleFreeWordTest {

    final LockFreeBuddyAllocator pool = LockFreeBuddyAllocator.create(0x4000_0000L, 8192);
    final long a = pool.alloc(0);
    final long b = pool.alloc(0);

    @Actor
    public void freeFirst(IIII_Result r) {
        r.r1 = freeOnce();
    }

    @Actor
    public void freeSecond(IIII_Result r) {
        r.r2 = freeOnce();
    }

    private int freeOnce() {
        try {
            pool.free(a, 0);
            return 0;
        } catch (IllegalStateException e) {
            return 1;
        }
    }

    @Arbiter
    public void check(IIII_Result r) {
        AllocatorStats s = pool.stats();
        r.r3 = (int) s.freeBlocksByOrder()[0];
        r.r4 = (int) (s.allocatedBytes() / 4096);
        pool.close(); // its metadata is off-heap: one state, one close
    }
}
