package dev.vcmm.ffm;

import org.agrona.IoUtil;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.status.CountersManager;
import org.agrona.concurrent.status.CountersReader;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * A {@link SegmentPool}'s live counters in a memory-mapped file, in Agrona's {@link CountersManager} format, so that
 * another process ({@code ./vcmm stat}) reads them while the pool runs, as Aeron's {@code AeronStat} reads a media
 * driver's. Opt-in ({@link SegmentPool.Builder#counters}): Agrona's {@link UnsafeBuffer} needs
 * {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED} on Java 25, and Agrona is an optional dependency of
 * this module; a pool without counters never loads this class.
 *
 * <p><b>Thread-safety:</b> the pool publishes under its own try-lock, one writer at a time, each value with a release
 * store; {@link #map} readers may run in any thread or process (each value an acquire load; a set of values read
 * while the pool publishes may mix two publications). A {@link View} is for one thread.
 *
 * <h2>File layout</h2>
 * <pre>
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +---------------------------------------------------------------+
 *  |                      magic 'VCMS' (0x534d4356)                |  0
 *  |                      version (1)                              |  4
 *  |                      metadata length M                        |  8
 *  |                      values length V                          | 12
 *  |                      pid (long)                               | 16
 *  |                      start time, epoch ms (long)              | 24
 *  |                      closed: 0 open, 1 closed (long)          | 32
 *  |                      pool name length N (int), name UTF-8 ... | 40 .. 127
 *  +---------------------------------------------------------------+
 *  |                      metadata: M bytes (CountersReader)       | {@value #HEADER_LENGTH}
 *  |                      values:   V bytes (CountersReader)       | {@value #HEADER_LENGTH} + M
 *  +---------------------------------------------------------------+
 * </pre>
 * All little-endian (the platform's order, as Agrona writes). Counter {@code i} is {@link Counter}{@code .values()[i]},
 * its type id {@link #TYPE_ID_BASE} + i, its label the pool's name and the counter's.
 *
 * <p>A {@link VcmmCounters} file has the same layout (the header's name is the VCMM's); its counters' type ids start
 * at {@link VcmmCounters#TYPE_ID_BASE}, which is how {@link View#kind()} tells the two apart. {@link #map},
 * {@link #list} and {@link View} read both.
 */
public final class PoolCounters implements AutoCloseable {

    /** The file's first int. */
    public static final int MAGIC = 0x534d4356; // "VCMS"
    /** The layout's version. */
    public static final int VERSION = 1;
    /** Offsets in the header. */
    public static final int MAGIC_OFFSET = 0;
    /** An offset in the header (the header's layout: {@link #MAGIC_OFFSET}). */
    public static final int VERSION_OFFSET = 4;
    /** An offset in the header (the header's layout: {@link #MAGIC_OFFSET}). */
    public static final int METADATA_LENGTH_OFFSET = 8;
    /** An offset in the header (the header's layout: {@link #MAGIC_OFFSET}). */
    public static final int VALUES_LENGTH_OFFSET = 12;
    /** An offset in the header (the header's layout: {@link #MAGIC_OFFSET}). */
    public static final int PID_OFFSET = 16;
    /** An offset in the header (the header's layout: {@link #MAGIC_OFFSET}). */
    public static final int START_OFFSET = 24;
    /** An offset in the header (the header's layout: {@link #MAGIC_OFFSET}). */
    public static final int CLOSED_OFFSET = 32;
    /** An offset in the header (the header's layout: {@link #MAGIC_OFFSET}). */
    public static final int NAME_OFFSET = 40;
    /** The most bytes of the pool's name kept in the header. */
    public static final int MAX_NAME_LENGTH = 84;
    /** The header's length; the metadata follows. */
    public static final int HEADER_LENGTH = 128;
    /** Counter type ids are this plus the counter's ordinal. */
    public static final int TYPE_ID_BASE = 0x7600;
    /** Counter files end with this. */
    public static final String SUFFIX = ".vcmmstat";
    /** Where {@code ./vcmm stat} looks without an argument, and a good place to put counter files. */
    public static final Path DEFAULT_DIRECTORY = Path.of(System.getProperty("java.io.tmpdir"), "vcmm-stat");

    /** The counters, in file order. */
    public enum Counter {
        /** Segments allocated since the pool opened (arena segments included). */
        ALLOCATIONS("allocations"),
        /** Segments freed since the pool opened. */
        FREES("frees"),
        /** Segments allocated and not yet freed. */
        LIVE_SEGMENTS("live segments"),
        /** Bytes of live segments, as asked for. */
        ALLOCATED_BYTES("allocated bytes"),
        /** Of those, in slab objects (at most 2 KiB). */
        SMALL_BYTES("allocated bytes, small (<= 2 KiB)"),
        /** Of those, in buddy blocks (up to the chunk). */
        BLOCK_BYTES("allocated bytes, blocks (<= chunk)"),
        /** Of those, in large mapped segments. */
        LARGE_BYTES("allocated bytes, large (> chunk)"),
        /** Bytes of large mappings kept for reuse. */
        CACHED_BYTES("cached mapping bytes"),
        /** Bytes of the memfd backed by pages. */
        RESIDENT_BYTES("resident bytes"),
        /** Large mappings made (each a few system calls). */
        MAPPINGS("mmaps"),
        /** Calls of trim(). */
        TRIMS("trims"),
        /** Bytes punched by trim(). */
        TRIMMED_BYTES("trimmed bytes"),
        /** Bytes punched by decay passes. */
        DECAYED_BYTES("decayed bytes"),
        /** Decay passes run. */
        DECAY_PASSES("decay passes"),
        /** Allocations that found no room (tryAllocate's null, allocate's OutOfMemoryError). */
        FAILURES("allocation failures"),
        /** The pool's capacity. */
        CAPACITY("capacity bytes");

        private final String label;

        Counter(String label) {
            this.label = label;
        }

        /** {@return the label's counter part, e.g. "resident bytes"} */
        public String label() {
            return label;
        }
    }

    private static final int COUNTERS = Counter.values().length;
    private static final List<String> LABELS = Stream.of(Counter.values()).map(Counter::label).toList();

    private final CountersFile file;

    private PoolCounters(CountersFile file) {
        this.file = file;
    }

    /**
     * Creates {@code <directory>/<pool>-<pid>[-n]<suffix>} (the directory too, if needed).
     *
     * @throws UncheckedIOException if the directory or the file cannot be made
     */
    static PoolCounters create(Path directory, String pool) {
        return new PoolCounters(CountersFile.create(directory, "pool", pool, LABELS, TYPE_ID_BASE));
    }

    /** {@return the counters file} */
    public Path file() {
        return file.file();
    }

    /** Sets every counter; {@code values} in {@link Counter} order. Called by one thread at a time. */
    void publish(long[] values) {
        file.publish(values);
    }

    /** Marks the file closed, unmaps it and deletes it (a reader that mapped it keeps its view). Idempotent. */
    @Override
    public void close() {
        file.close();
    }

    /**
     * Maps a counters file read-only-in-spirit (nothing is written) for reading.
     *
     * @param file a counters file a pool wrote
     * @return a view of its header and counters
     * @throws IllegalArgumentException if the file is not a counters file (wrong magic, version or lengths)
     * @throws UncheckedIOException     if it cannot be read
     */
    public static View map(Path file) {
        MappedByteBuffer m;
        try {
            m = IoUtil.mapExistingFile(file.toFile(), file.toString());
        } catch (IllegalStateException e) {
            throw new UncheckedIOException(new IOException("cannot map " + file, e));
        }
        UnsafeBuffer h = new UnsafeBuffer(m, 0, Math.min(HEADER_LENGTH, m.capacity()));
        if (m.capacity() < HEADER_LENGTH || h.getIntAcquire(MAGIC_OFFSET) != MAGIC || h.getInt(VERSION_OFFSET) != VERSION
            || h.getInt(METADATA_LENGTH_OFFSET) <= 0 || h.getInt(VALUES_LENGTH_OFFSET) <= 0
            || (long) HEADER_LENGTH + h.getInt(METADATA_LENGTH_OFFSET) + h.getInt(VALUES_LENGTH_OFFSET) > m.capacity()) {
            IoUtil.unmap(m);
            throw new IllegalArgumentException("file=" + file + " is not a vcmm counters file (magic, version "
                + VERSION + " or lengths do not match)");
        }
        return new View(file, m, h);
    }

    /**
     * Lists the counter files of a directory.
     *
     * @param directory where pools write their files, e.g. {@link #DEFAULT_DIRECTORY}
     * @return the counter files in {@code directory} ({@code *}{@value #SUFFIX}), sorted; empty if there is none
     */
    public static List<Path> list(Path directory) {
        if (!Files.isDirectory(directory)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(directory)) {
            return s.filter(p -> p.getFileName().toString().endsWith(SUFFIX)).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + directory, e);
        }
    }

    /**
     * A mapped counters file, for reading.
     *
     * <p><b>Thread-safety:</b> for one thread; the values it reads are written by the pool's process concurrently.
     */
    public static final class View implements AutoCloseable {
        private final Path file;
        private final MappedByteBuffer mapped;
        private final UnsafeBuffer header;
        private final CountersReader reader;

        private View(Path file, MappedByteBuffer mapped, UnsafeBuffer header) {
            this.file = file;
            this.mapped = mapped;
            this.header = header;
            int meta = header.getInt(METADATA_LENGTH_OFFSET);
            int values = header.getInt(VALUES_LENGTH_OFFSET);
            this.reader = new CountersReader(new UnsafeBuffer(mapped, HEADER_LENGTH, meta),
                new UnsafeBuffer(mapped, HEADER_LENGTH + meta, values));
        }

        /** {@return the file} */
        public Path file() {
            return file;
        }

        /** {@return the pool's name (a {@link VcmmCounters} file's: the VCMM's)} */
        public String pool() {
            int n = header.getInt(NAME_OFFSET);
            byte[] b = new byte[Math.max(0, Math.min(n, MAX_NAME_LENGTH))];
            header.getBytes(NAME_OFFSET + 4, b);
            return new String(b, java.nio.charset.StandardCharsets.UTF_8);
        }

        /**
         * {@return {@code "vcmm"} if the file holds a {@link VcmmCounters}' counters (its first counter's type id is in
         * {@code [}{@link VcmmCounters#TYPE_ID_BASE}{@code , +0x100)}), else {@code "pool"}}
         */
        public String kind() {
            int[] first = {-1};
            reader.forEach((value, id, label) -> {
                if (first[0] < 0) {
                    first[0] = reader.getCounterTypeId(id);
                }
            });
            int t = first[0] - VcmmCounters.TYPE_ID_BASE;
            return t >= 0 && t < 0x100 ? "vcmm" : "pool";
        }

        /** {@return the pid of the process that owns the pool} */
        public long pid() {
            return header.getLong(PID_OFFSET);
        }

        /** {@return when the pool opened, epoch milliseconds} */
        public long startMillis() {
            return header.getLong(START_OFFSET);
        }

        /** {@return whether the pool was closed (its file is then normally deleted)} */
        public boolean closed() {
            return header.getLongAcquire(CLOSED_OFFSET) != 0;
        }

        /** {@return Agrona's reader over the file's counters} */
        public CountersReader reader() {
            return reader;
        }

        /** {@return each allocated counter of this file's pool by {@link Counter}, read now (acquire loads)} */
        public Map<Counter, Long> values() {
            Map<Counter, Long> out = new LinkedHashMap<>();
            reader.forEach((value, id, label) -> {
                int type = reader.getCounterTypeId(id);
                int ordinal = type - TYPE_ID_BASE;
                if (ordinal >= 0 && ordinal < COUNTERS) {
                    out.put(Counter.values()[ordinal], value);
                }
            });
            return out;
        }

        /** {@return (id, label, value) of every allocated counter, read now} */
        public List<String[]> rows() {
            List<String[]> out = new ArrayList<>();
            reader.forEach((value, id, label) -> out.add(new String[]{String.valueOf(id), label, String.valueOf(value)}));
            return out;
        }

        /** Unmaps the file. */
        @Override
        public void close() {
            IoUtil.unmap(mapped);
        }
    }
}
