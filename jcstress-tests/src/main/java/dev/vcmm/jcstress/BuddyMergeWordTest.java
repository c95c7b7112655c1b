package dev.vcmm.jcstress;

import dev.vcmm.ffm.LockFreeBuddyAllocator;
import dev.vcmm.spi.AllocatorStats;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Arbiter;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.III_Result;

/**
 * Buddy merge word: an 8 KiB pool (one order-1 block) is split into its two 4 KiB buddies, both allocated;
 * then two threads free one buddy each at once. Both buddies' FREE and ALLOCATED bits live in one order-0
 * block word: one free finds its buddy's FREE bit set and merges (clears it and its own ALLOCATED bit with
 * one compare-and-set and carries the order-1 block up), the other finds it clear and sets its own FREE
 * bit in the compare-and-set that clears its ALLOCATED bit; whichever order the compare-and-sets take,
 * afterwards exactly one order-1 block is free and nothing of order 0. Uses only the public API of
 * {@link LockFreeBuddyAllocator} (no thread caches).
 *
 * <p>Results: r1 = free order-1 blocks; r2 = free order-0 blocks; r3 = 1 if an order-1 alloc then succeeds.
 */
@JCStressTest
@Outcome(id = "1, 0, 1", expect = Expect.ACCEPTABLE, desc = "The two frees merged exactly once: one order-1 block free, which alloc finds.")
@Outcome(id = "0, 2, 0", expect = Expect.FORBIDDEN, desc = "Lost merge: both buddies free at order 0, the order-1 block is hidden.")
@Outcome(expect = Expect.FORBIDDEN, desc = "A block lost or counted twice.")
@State
public class BuddyMergeWordTest {

    final LockFreeBuddyAllocator pool = LockFreeBuddyAllocator.create(0x4000_0000L, 8192);
    final long a = pool.alloc(0);
    final long b = pool.alloc(0);

    @Actor
    public void freeFirst() {
        pool.free(a, 0);
    }

    @Actor
    public void freeSecond() {
        pool.free(b, 0);
    }

    @Arbiter
    public void check(III_Result r) {
        AllocatorStats s = pool.stats();
        long[] byOrder = s.freeBlocksByOrder();
        r.r1 = byOrder.length > 1 ? (int) byOrder[1] : -1;
        r.r2 = (int) byOrder[0];
        long merged = pool.alloc(1);
        r.r3 = merged != LockFreeBuddyAllocator.NONE ? 1 : 0;
        if (merged != LockFreeBuddyAllocator.NONE) {
            pool.free(merged, 1);
        }
        pool.close(); // its metadata is off-heap: one state, one close
    }
}
