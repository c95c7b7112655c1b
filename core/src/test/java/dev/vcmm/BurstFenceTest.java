package dev.vcmm;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link BurstFence} under contention: bursts of several threads enter and leave while one thread synchronizes in a
 * loop. The property: a synchronize that began after a burst entered does not return before that burst leaves.
 * Bursts read the number of synchronizes begun right after they enter ({@code b}) and the number completed right
 * before they leave ({@code c}); with one synchronizing thread, synchronize number {@code b + 1} began after the
 * burst entered, so {@code c <= b} must hold. The test counts the synchronizes that found a burst in flight, to prove
 * the windows overlapped.
 */
class BurstFenceTest {

    @Test
    void shouldNotReturnFromSynchronizeBeforeEveryEarlierBurstLeft() throws Exception {
        BurstFence fence = new BurstFence();
        int threads = 2;
        long rounds = Boolean.getBoolean("vcmm.long") ? 200_000 : 2_000;
        AtomicLong begun = new AtomicLong();
        AtomicLong completed = new AtomicLong();
        AtomicLong violations = new AtomicLong();
        AtomicLong bursts = new AtomicLong();
        AtomicBoolean stop = new AtomicBoolean();
        CyclicBarrier start = new CyclicBarrier(threads + 1);
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Thread w = new Thread(() -> {
                await(start);
                while (!stop.get()) {
                    int at = fence.enter();
                    long b = begun.get();
                    for (int i = 0; i < 50; i++) {
                        Thread.onSpinWait(); // the burst's copy
                    }
                    long c = completed.get();
                    fence.leave(at);
                    if (c > b) {
                        violations.incrementAndGet();
                    }
                    bursts.incrementAndGet();
                }
            });
            w.start();
            workers.add(w);
        }
        await(start);
        long waited = 0;
        long r = 0;
        // at least `rounds` synchronizes, and on until 100 of them found a burst in flight (the overlap this test
        // is about), within 20 s: on a loaded machine the burst threads may start late
        long deadline = System.nanoTime() + 20_000_000_000L;
        for (; (r < rounds || waited < 100) && System.nanoTime() < deadline; r++) {
            begun.incrementAndGet();
            if (fence.synchronize()) {
                waited++;
            }
            completed.incrementAndGet();
        }
        rounds = r;
        stop.set(true);
        for (Thread w : workers) {
            w.join();
        }
        assertEquals(0, violations.get(), "a synchronize returned while a burst that entered before it was in flight");
        assertTrue(waited >= 100, "the synchronizes overlapped bursts in flight: " + waited + " of " + rounds);
        assertTrue(bursts.get() > 0, "bursts ran: " + bursts.get());
        assertEquals(0, fence.inFlight(), "every burst left");
    }

    @Test
    void shouldNotWaitForBurstsThatEnterAfterSynchronizeBegan() throws Exception {
        BurstFence fence = new BurstFence();
        int at = fence.enter();
        Thread sync = new Thread(fence::synchronize);
        sync.start();
        sync.join(200);
        assertTrue(sync.isAlive(), "synchronize waits for the burst that entered before it");
        // a burst entering now counts in the new epoch: synchronize must not wait for it
        Thread late = new Thread(() -> {
            int mine = fence.enter();
            try {
                Thread.sleep(2_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            fence.leave(mine);
        });
        late.start();
        Thread.sleep(50);
        fence.leave(at);
        sync.join(1_000);
        assertTrue(!sync.isAlive(), "synchronize returned while a later burst is still in flight");
        late.join();
    }

    private static void await(CyclicBarrier b) {
        try {
            b.await();
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }
}
