package dev.vcmm.ffm;

import dev.vcmm.DeviceStats;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmStats;

import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Stream;

/**
 * A {@link Vcmm}'s live counters in a memory-mapped file that another process reads while the VCMM runs
 * ({@code ./vcmm stat}), as {@link PoolCounters} does for a pool: the same file layout (drawn there), counter type ids
 * from {@link #TYPE_ID_BASE}, labels {@code "vcmm '<name>' <counter>"}. Each value is summed over the VCMM's devices
 * or VCMs from one {@link Vcmm#stats()} snapshot, taken by {@link #publish()}: by the caller, or every period by a
 * daemon thread this object owns ({@link #open(Vcmm, Path, Duration)}). Nothing is counted for the file on the VCMM's
 * own paths: publishing reads the statistics the VCMM keeps anyway.
 *
 * <p>Opt-in, as the pool's: Agrona's buffers need {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED} on
 * Java 25, and Agrona is an optional dependency of this module.
 *
 * <p><b>Thread-safety:</b> {@link #publish()} and {@link #close()} may be called from any threads: they are
 * synchronized on this object, so one publication runs at a time and none runs after close. Readers in other threads
 * or processes ({@link PoolCounters#map}) read each value with an acquire load; a set of values read while a
 * publication runs may mix two publications.
 */
public final class VcmmCounters implements AutoCloseable {

    /** Counter type ids are this plus the counter's ordinal (a pool's start at {@link PoolCounters#TYPE_ID_BASE}). */
    public static final int TYPE_ID_BASE = 0x7700;

    /** The counters, in file order; each summed over the VCMM's devices ({@link DeviceStats}) or VCMs. */
    public enum Counter {
        /** IOTLB lookups that found an entry ({@link dev.vcmm.IotlbStats#hits()}). */
        IOTLB_HITS("iotlb hits"),
        /** IOTLB lookups that found none ({@link dev.vcmm.IotlbStats#misses()}). */
        IOTLB_MISSES("iotlb misses"),
        /**
         * Page-table walks of IOTLB misses: each miss walks the tables once, so this equals {@link #IOTLB_MISSES}. Not
         * counted: the other walks, after a hit whose entry does not allow the access (e.g. a write through a
         * read-only or clean entry), a sparse reservation's write check, {@link dev.vcmm.Device#translate(long)} calls,
         * and the translations of one-to-one devices (they have no IOTLB).
         */
        WALKS("walks (one per iotlb miss)"),
        /** Faults taken ({@link DeviceStats#faults()}). */
        FAULTS("faults"),
        /** Faults a handler retried ({@link DeviceStats#retries()}). */
        RETRIES("fault retries"),
        /** Accesses that failed with a {@code DeviceFaultException} ({@link DeviceStats#failed()}). */
        FAILED("failed accesses"),
        /** Bytes DMA moved from memory ({@link DeviceStats#bytesRead()}). */
        BYTES_READ("dma bytes read"),
        /** Bytes DMA moved into memory ({@link DeviceStats#bytesWritten()}). */
        BYTES_WRITTEN("dma bytes written"),
        /** Invalidation syncs: waits for the DMA bursts in flight ({@link DeviceStats#syncs()}). */
        SYNCS("invalidation syncs"),
        /** Reservations of every VCM. */
        RESERVATIONS("reservations"),
        /** Bytes reserved. */
        RESERVED_BYTES("reserved bytes"),
        /** Bytes of reservations that are backed. */
        BACKED_BYTES("backed bytes"),
        /** Bytes of page tables, every format. */
        TABLE_BYTES("page-table bytes"),
        /** Page-table entry writes, in 4 KiB pages: see {@link VcmmStats.VcmStats#pteWrites()} for what counts. */
        PTE_WRITES("pte writes (4 KiB pages)");

        private final String label;

        Counter(String label) {
            this.label = label;
        }

        /** {@return the label's counter part, e.g. "iotlb hits"} */
        public String label() {
            return label;
        }
    }

    private static final List<String> LABELS = Stream.of(Counter.values()).map(Counter::label).toList();

    private final Vcmm vcmm;
    private final CountersFile file;
    private final Thread publisher;
    private volatile boolean closed;

    private VcmmCounters(Vcmm vcmm, CountersFile file, String name, Duration period) {
        this.vcmm = vcmm;
        this.file = file;
        if (period.isZero()) {
            this.publisher = null;
        } else {
            long nanos = period.toNanos();
            this.publisher = Thread.ofPlatform().daemon().name("vcmm-counters-" + name).unstarted(() -> run(nanos));
        }
    }

    /**
     * Opens the counters of {@code vcmm} in a new file {@code <directory>/vcmm-<pid>[-n].vcmmstat}, published once;
     * the caller publishes again with {@link #publish()}.
     *
     * @param vcmm      the VCMM
     * @param directory where to put the file, e.g. {@link PoolCounters#DEFAULT_DIRECTORY} (made if needed)
     * @return the open counters
     * @throws UncheckedIOException  if the file cannot be made
     * @throws IllegalStateException if {@code vcmm} is closed (no file is left behind)
     */
    public static VcmmCounters open(Vcmm vcmm, Path directory) {
        return open(vcmm, directory, "vcmm", Duration.ZERO);
    }

    /**
     * Opens the counters of {@code vcmm} as {@link #open(Vcmm, Path)} does, and starts a daemon thread that publishes
     * every {@code period} until {@link #close()} (or until the VCMM closes).
     *
     * @param vcmm      the VCMM
     * @param directory where to put the file (made if needed)
     * @param period    how often to publish, positive
     * @return the open counters
     * @throws IllegalArgumentException if {@code period} is not positive
     * @throws UncheckedIOException     if the file cannot be made
     * @throws IllegalStateException    if {@code vcmm} is closed (no file is left behind)
     */
    public static VcmmCounters open(Vcmm vcmm, Path directory, Duration period) {
        if (period.isNegative() || period.isZero()) {
            throw new IllegalArgumentException("period=" + period + " must be positive");
        }
        return open(vcmm, directory, "vcmm", period);
    }

    /**
     * Opens the counters of {@code vcmm} under a name ({@code <directory>/<name>-<pid>[-n].vcmmstat}, labels
     * {@code "vcmm '<name>' ..."}), published once, then every {@code period} by a daemon thread unless it is zero.
     *
     * @param vcmm      the VCMM
     * @param directory where to put the file (made if needed)
     * @param name      the name {@code ./vcmm stat} shows (at most {@value PoolCounters#MAX_NAME_LENGTH} bytes kept)
     * @param period    how often to publish, or {@link Duration#ZERO} for no thread (the caller publishes)
     * @return the open counters
     * @throws IllegalArgumentException if {@code period} is negative or {@code name} is empty
     * @throws UncheckedIOException     if the file cannot be made
     * @throws IllegalStateException    if {@code vcmm} is closed (no file is left behind)
     */
    public static VcmmCounters open(Vcmm vcmm, Path directory, String name, Duration period) {
        Objects.requireNonNull(vcmm, "vcmm");
        Objects.requireNonNull(directory, "directory");
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(period, "period");
        if (period.isNegative()) {
            throw new IllegalArgumentException("period=" + period + " must not be negative");
        }
        if (name.isEmpty()) {
            throw new IllegalArgumentException("name must not be empty");
        }
        long[] first = values(vcmm.stats()); // a closed VCMM throws here, before the file exists
        CountersFile file = CountersFile.create(directory, "vcmm", name, LABELS, TYPE_ID_BASE);
        file.publish(first);
        VcmmCounters c = new VcmmCounters(vcmm, file, name, period);
        if (c.publisher != null) {
            c.publisher.start();
        }
        return c;
    }

    /** {@return the counters file} */
    public Path file() {
        return file.file();
    }

    /**
     * Takes a {@link Vcmm#stats()} snapshot and writes every counter (each a release store).
     *
     * @throws IllegalStateException if this or the VCMM is closed
     */
    public synchronized void publish() {
        if (closed) {
            throw new IllegalStateException("already closed: the counters of " + file.file());
        }
        file.publish(values(vcmm.stats()));
    }

    /**
     * Stops the publishing thread (waiting for it to end), marks the file closed, unmaps and deletes it. Idempotent.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            file.close();
        }
        Thread t = publisher;
        if (t != null && t != Thread.currentThread()) {
            LockSupport.unpark(t);
            boolean interrupted = false;
            while (t.isAlive()) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** The publishing thread: publish, sleep, until closed or the VCMM is. */
    private void run(long nanos) {
        while (!closed) {
            LockSupport.parkNanos(this, nanos);
            try {
                publish();
            } catch (IllegalStateException e) {
                return; // this or the VCMM closed
            }
        }
    }

    /** {@return the counters of a snapshot, in {@link Counter} order} */
    static long[] values(VcmmStats s) {
        long[] v = new long[Counter.values().length];
        for (DeviceStats d : s.devices()) {
            v[Counter.IOTLB_HITS.ordinal()] += d.iotlb().hits();
            v[Counter.IOTLB_MISSES.ordinal()] += d.iotlb().misses();
            v[Counter.WALKS.ordinal()] += d.iotlb().misses();
            v[Counter.FAULTS.ordinal()] += d.faults();
            v[Counter.RETRIES.ordinal()] += d.retries();
            v[Counter.FAILED.ordinal()] += d.failed();
            v[Counter.BYTES_READ.ordinal()] += d.bytesRead();
            v[Counter.BYTES_WRITTEN.ordinal()] += d.bytesWritten();
            v[Counter.SYNCS.ordinal()] += d.syncs();
        }
        for (VcmmStats.VcmStats m : s.vcms()) {
            v[Counter.RESERVATIONS.ordinal()] += m.reservations();
            v[Counter.RESERVED_BYTES.ordinal()] += m.reservedBytes();
            v[Counter.BACKED_BYTES.ordinal()] += m.backedBytes();
            for (long b : m.tableBytesByFormat().values()) {
                v[Counter.TABLE_BYTES.ordinal()] += b;
            }
            v[Counter.PTE_WRITES.ordinal()] += m.pteWrites();
        }
        return v;
    }

    /**
     * Reads a VCMM's counters from a mapped counters file.
     *
     * @param view a counters file, mapped with {@link PoolCounters#map}
     * @return each of its VCMM counters, read now (acquire loads); empty for a pool's file
     */
    public static Map<Counter, Long> values(PoolCounters.View view) {
        Map<Counter, Long> out = new EnumMap<>(Counter.class);
        view.reader().forEach((value, id, label) -> {
            int ordinal = view.reader().getCounterTypeId(id) - TYPE_ID_BASE;
            if (ordinal >= 0 && ordinal < Counter.values().length) {
                out.put(Counter.values()[ordinal], value);
            }
        });
        return out;
    }
}
