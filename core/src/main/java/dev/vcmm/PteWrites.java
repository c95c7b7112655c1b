package dev.vcmm;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * A VCM's count of page-table entry writes ({@link VcmmStats.VcmStats#pteWrites()}), kept in per-thread cells so that
 * back, unback and remap, which run in parallel under the VCM's read lock, add to it with no atomic read-modify-write
 * and no store to a cache line another thread writes: each thread adds to its own cell (a plain load and an opaque
 * store), and {@link #sum()} adds the cells up with opaque loads.
 *
 * <p><b>Thread-safety:</b> {@link #add} from any thread, each to its own cell; {@link #sum} from any thread. The race
 * between a cell's owner and a reader is benign: a reader sees each cell's value before or after an add (opaque
 * accesses do not tear a long), so the sum is exact once every add happened-before it (e.g. after a join or under
 * the VCM's write lock) and otherwise a value that was true of each cell at some moment. The cells of threads that
 * ended stay in the list (one small object per thread that ever counted).
 */
final class PteWrites {

    private final ThreadLocal<Cell> cell = ThreadLocal.withInitial(this::newCell);
    private final ConcurrentLinkedQueue<Cell> cells = new ConcurrentLinkedQueue<>();

    /** Adds {@code bytes / 4096} writes (the bytes of one table's operation, in 4 KiB pages) to this thread's cell. */
    void addBytes(long bytes) {
        if (bytes > 0) {
            Cell c = cell.get();
            Cell.VALUE.setOpaque(c, c.value + (bytes >>> 12)); // only this thread writes c.value: the plain read is its own
        }
    }

    /** {@return the sum of every thread's cell} */
    long sum() {
        long s = 0;
        for (Cell c : cells) {
            s += (long) Cell.VALUE.getOpaque(c);
        }
        return s;
    }

    private Cell newCell() {
        Cell c = new Cell();
        cells.add(c);
        return c;
    }

    /** One thread's count, padded onto its own cache line (a neighbour's cell is another thread's). */
    @SuppressWarnings("unused")
    private static final class Cell {
        static final VarHandle VALUE;

        static {
            try {
                VALUE = MethodHandles.lookup().findVarHandle(Cell.class, "value", long.class);
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        long p01, p02, p03, p04, p05, p06, p07;
        long value;
        long p11, p12, p13, p14, p15, p16, p17;
    }
}
