package dev.vcmm.ffm;

/**
 * Told of each leak a {@link SegmentPool} detects (see {@link LeakLevel}). The default, {@link #logging()}, logs a
 * {@link System.Logger.Level#WARNING} with the allocation's stack.
 *
 * <p><b>Thread-safety:</b> called from a cleaner thread (the JDK's for segments, the pool's leak cleaner for arenas),
 * possibly concurrently for several leaks: implementations must be thread-safe, quick, and must not throw (what they
 * throw is dropped).
 */
@FunctionalInterface
public interface LeakListener {

    /**
     * Called once for each leak found, on the thread that found it.
     *
     * @param leak what was dropped, and where it was allocated
     */
    void leaked(LeakReport leak);

    /** {@return a listener that logs each leak as a warning to the {@code dev.vcmm.ffm.SegmentPool} system logger} */
    static LeakListener logging() {
        return leak -> System.getLogger(SegmentPool.class.getName())
            .log(System.Logger.Level.WARNING, leak.toString(), leak.allocationSite());
    }
}
