package dev.vcmm.ffm;

import org.agrona.IoUtil;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.status.CountersManager;
import org.agrona.concurrent.status.CountersReader;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static dev.vcmm.ffm.PoolCounters.*;

/**
 * The writing side of a counters file, shared by {@link PoolCounters} (a pool's) and {@link VcmmCounters} (a
 * VCMM's): makes the file, writes the header drawn in {@link PoolCounters} and allocates one Agrona counter per label,
 * type id {@code typeIdBase + i}, label {@code "<kind> '<name>' <label>"}.
 *
 * <p><b>Thread-safety:</b> {@link #create} is synchronized (two files of one name in one process get two names);
 * {@link #set} and {@link #close} are called by one thread at a time (the owner's lock).
 */
final class CountersFile implements AutoCloseable {

    private static final int VALUES_LENGTH = 32 * CountersReader.COUNTER_LENGTH; // room for 32 counters
    private static final int METADATA_LENGTH = VALUES_LENGTH / CountersReader.COUNTER_LENGTH * CountersReader.METADATA_LENGTH;

    private final Path file;
    private final MappedByteBuffer mapped;
    private final UnsafeBuffer header;
    private final CountersManager manager;
    private final int[] ids;
    private boolean closed;

    private CountersFile(Path file, String kind, String name, List<String> labels, int typeIdBase) {
        this.file = file;
        this.mapped = IoUtil.mapNewFile(file.toFile(), HEADER_LENGTH + METADATA_LENGTH + VALUES_LENGTH, true);
        this.header = new UnsafeBuffer(mapped, 0, HEADER_LENGTH);
        byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
        int n = Math.min(bytes.length, MAX_NAME_LENGTH);
        header.putInt(VERSION_OFFSET, VERSION);
        header.putInt(METADATA_LENGTH_OFFSET, METADATA_LENGTH);
        header.putInt(VALUES_LENGTH_OFFSET, VALUES_LENGTH);
        header.putLong(PID_OFFSET, ProcessHandle.current().pid());
        header.putLong(START_OFFSET, System.currentTimeMillis());
        header.putInt(NAME_OFFSET, n);
        header.putBytes(NAME_OFFSET + 4, bytes, 0, n);
        this.manager = new CountersManager(new UnsafeBuffer(mapped, HEADER_LENGTH, METADATA_LENGTH),
            new UnsafeBuffer(mapped, HEADER_LENGTH + METADATA_LENGTH, VALUES_LENGTH));
        this.ids = new int[labels.size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = manager.allocate(kind + " '" + name + "' " + labels.get(i), typeIdBase + i);
        }
        header.putIntRelease(MAGIC_OFFSET, MAGIC); // last: a reader that sees the magic sees the rest
    }

    /**
     * Creates {@code <directory>/<name>-<pid>[-n]<suffix>} (the directory too, if needed).
     *
     * @throws UncheckedIOException if the directory or the file cannot be made
     */
    static synchronized CountersFile create(Path directory, String kind, String name, List<String> labels, int typeIdBase) {
        try {
            Files.createDirectories(directory);
            String base = name.replaceAll("[^A-Za-z0-9._-]", "_") + "-" + ProcessHandle.current().pid();
            Path file = directory.resolve(base + SUFFIX);
            for (int i = 1; Files.exists(file); i++) { // two owners of one name in one process get two files
                file = directory.resolve(base + "-" + i + SUFFIX); // (synchronized: the pid keeps other processes out)
            }
            return new CountersFile(file, kind, name, labels, typeIdBase); // mapNewFile creates it, failing if it exists
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create the counters file of " + kind + " '" + name + "' in " + directory, e);
        }
    }

    /** {@return the counters file} */
    Path file() {
        return file;
    }

    /** Sets every counter; {@code values} in label order. Called by one thread at a time. */
    void publish(long[] values) {
        if (closed) {
            return;
        }
        for (int i = 0; i < ids.length; i++) {
            manager.setCounterValue(ids[i], values[i]); // a release store
        }
    }

    /** Marks the file closed, unmaps it and deletes it (a reader that mapped it keeps its view). Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        header.putLongRelease(CLOSED_OFFSET, 1);
        IoUtil.unmap(mapped);
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            // a stale file: ./vcmm stat shows it as closed
        }
    }
}
