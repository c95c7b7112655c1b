package dev.vcmm;

import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.II_Result;

/**
 * The DMA fence's promise as a race (in package {@code dev.vcmm}, where {@link BurstFence} lives): one actor is a
 * burst that reads whether its translation was removed and, if not, writes memory through it; the other removes
 * the translation and synchronizes the fence, then reads that memory. Once synchronize returns, a burst that used
 * the old translation has finished its write: the invalidator sees it.
 *
 * <p>Results: r1 = 0 if the burst used the old translation (and wrote), 1 if it saw it removed (and did not);
 * r2 = the memory the invalidator read after synchronize.
 */
@JCStressTest
@Outcome(id = "0, 1", expect = Expect.ACCEPTABLE, desc = "The burst came first: its write landed before synchronize returned.")
@Outcome(id = "1, 0", expect = Expect.ACCEPTABLE, desc = "The burst came after the removal: it wrote nothing.")
@Outcome(id = "0, 0", expect = Expect.FORBIDDEN, desc = "Synchronize returned while a burst that used the old translation was still writing.")
@Outcome(expect = Expect.FORBIDDEN, desc = "Anything else.")
@State
public class BurstFenceSyncTest {

    final BurstFence fence = new BurstFence();
    volatile int removed;
    volatile int memory;

    @Actor
    public void burst(II_Result r) {
        int at = fence.enter();
        try {
            if (removed == 0) {
                r.r1 = 0;
                memory = 1; // the write through the translation read above
            } else {
                r.r1 = 1;
            }
        } finally {
            fence.leave(at);
        }
    }

    @Actor
    public void invalidate(II_Result r) {
        removed = 1;
        fence.synchronize();
        r.r2 = memory;
    }
}
