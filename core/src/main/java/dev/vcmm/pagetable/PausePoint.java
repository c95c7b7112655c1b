package dev.vcmm.pagetable;

/**
 * A test-only pause point of the pagetable package: tests install one in {@link Walker#pausePoint} to stop
 * a walk at a named place and force an interleaving (a walk stalled between two reads while another thread
 * unmaps or closes). Package-private; when none is installed (always, outside tests) the cost is one load
 * of a static field and a null check per walk level.
 *
 * <p><b>Thread-safety:</b> the field is a plain static: install it before starting the threads that walk
 * ({@link Thread#start()} publishes it) and remove it after joining them.
 */
@FunctionalInterface
interface PausePoint {

    /** The place a walk reports after each descriptor read: {@code level} is the level just read. */
    String WALK_READ = "walk.read";

    /**
     * Called by the walking thread; may block it.
     *
     * @param place   the named place, e.g. {@link #WALK_READ}
     * @param level   the table level the walk has just read
     * @param va      the address being walked
     */
    void reached(String place, int level, long va);
}
