package dev.vcmm.ffm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.spi.PhysicalRange;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.ReadOnlyBufferException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileChannel.MapMode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Simulated physical memory of one memory type over one off-heap {@link MemorySegment}, sparse: a
 * 64 GiB memory costs only the pages touched.
 *
 * <p><b>Thread-safety:</b> thread-safe; every method may be called from any thread. Word accesses have
 * the access mode their prefix names, through {@link VarHandle}s on little-endian layouts; bulk copies
 * and {@link #fill} are plain. {@link #close()} may race with accesses: an access that starts after it
 * fails with an {@link IllegalStateException} from the closed flag, and one that races it fails with the
 * {@link IllegalStateException} of the closed {@link Arena} (the JDK's shared-arena close handshakes with
 * threads in an access), never with a crash. A close refused because a native call holds the memory
 * changes nothing and can be retried.
 *
 * <p><b>Backing:</b> on Linux an anonymous {@code memfd_create(2)} file named {@code vcmm-<name>},
 * sized with {@code ftruncate(2)} and mapped {@code MAP_SHARED} read-write into a shared arena this
 * object owns; the file is tmpfs, so a page is allocated on its first touch and the kernel reserves
 * nothing up front. A read touches too: a read fault on a hole of a shmem mapping allocates a zeroed
 * page (measured: 1024 reads 16 MiB apart cost 4 MiB of {@code RssShmem}), unlike
 * {@link dev.vcmm.heap.HeapPhysicalMemory}, which allocates only on writes. The fd stays
 * open until {@link #close()} so that a later stage can map the same pages a second time
 * ({@code mmap(MAP_FIXED | MAP_SHARED)} of {@link #fd()}), as aliasing hardware would. Elsewhere, a
 * sparse temporary file extended with {@link RandomAccessFile#setLength}, mapped and deleted at once
 * (or at close where the system does not allow deleting a mapped file): sparse where the file system
 * supports it. The file is sized before mapping on purpose: {@link FileChannel#map} would itself grow a
 * short file and may preallocate every block to do so.
 *
 * <p><b>Checks:</b> each public entry checks the memory is open, then the alignment of a word, then with
 * one overflow-safe comparison that the range is inside; past that, the segment's own bounds and
 * liveness checks remain as a second line.
 */
public final class SegmentPhysicalMemory implements PhysicalMemory {

    /** How a memory is backed: a memfd (Linux) or a temporary file. */
    enum Backing {
        /** An anonymous tmpfs file from {@code memfd_create}; Linux only. */
        MEMFD,
        /** A sparse temporary file, deleted as soon as it is mapped. */
        TEMP_FILE;

        /** {@return {@link #MEMFD} where available, else {@link #TEMP_FILE}} */
        static Backing best() {
            return Libc.HAS_MEMFD ? MEMFD : TEMP_FILE;
        }
    }

    /**
     * The smallest range {@link #zero} asks the memfd for its holes before filling, 64 KiB. Measured on the build
     * machine (docs/architecture.md, "Zero on handoff"): filling 64 KiB costs about 1.2 us resident and 240 us where
     * the pages were never touched (each is faulted in), the two {@code lseek} calls about 1-2 us.
     */
    public static final long SKIP_HOLES_THRESHOLD = 64L << 10;

    /**
     * How far {@link #zero} fills after a page it found holding data, to the next multiple of 2 MiB, before it asks
     * for data again: about 40 us of filling per 1-2 us system call, and at most 2 MiB of holes faulted in per window
     * that holds any data.
     */
    static final long ZERO_WINDOW = 2L << 20;

    /** The largest size accepted, 64 TiB: comfortably inside the 47-bit user address space of x86-64. */
    public static final long MAX_SIZE = 1L << 46;

    /** 64-bit words: little-endian, 8-byte aligned. */
    static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** 32-bit words: little-endian, 4-byte aligned. */
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Coordinates {@code (MemorySegment, long offset)}; exact, so a wrongly typed call fails in tests. */
    private static final VarHandle LONG = LONG_LE.varHandle().withInvokeExactBehavior();
    private static final VarHandle INT = INT_LE.varHandle().withInvokeExactBehavior();

    private final String name;
    private final long base;
    private final long size;
    private final PhysicalRange range;
    private final Backing backing;
    private final Arena arena;
    private final MemorySegment segment;
    /** The memfd, or -1 for a temporary file. */
    private final int fd;
    /** The temporary file if it could not be deleted while mapped, else null. */
    private final Path fileToDelete;

    /** Written once, false to true, in {@link #close()} after the arena closed; read volatile at every entry. */
    private volatile boolean closed;

    /** Read-locked by {@link #zero} around its {@code lseek} calls, write-locked by {@link #close()} to close the fd. */
    private final ReentrantReadWriteLock fdLock = new ReentrantReadWriteLock();

    /** Whether {@link #zero} asks for holes; cleared for good the first time the kernel refuses. */
    private volatile boolean seekHoles = Libc.hasSeekData();

    /** Whether {@link #fileToDelete} is gone. Guarded by {@code this}. */
    private boolean fileDeleted;

    private SegmentPhysicalMemory(String name, long base, long size, Backing backing, Arena arena,
                                  MemorySegment segment, int fd, Path fileToDelete) {
        this.name = name;
        this.base = base;
        this.size = size;
        this.range = new PhysicalRange(name, base, size);
        this.backing = backing;
        this.arena = arena;
        this.segment = segment;
        this.fd = fd;
        this.fileToDelete = fileToDelete;
    }

    /**
     * Opens a zero-filled memory for {@code spec}'s range, named after the spec in messages and in the
     * memfd's name.
     *
     * @param spec the range and name
     * @return the memory; the caller closes it
     * @throws IllegalArgumentException if the size is above {@link #MAX_SIZE}
     * @throws UncheckedIOException     if the system refuses the file or the mapping
     */
    public static SegmentPhysicalMemory open(MemorySpec spec) {
        return open(spec.name(), spec.base(), spec.size());
    }

    /**
     * Opens a zero-filled memory called {@code name} covering {@code [base, base + size)}.
     *
     * @param name for messages and the memfd's name
     * @param base physical address of the first byte, a non-negative multiple of 4096
     * @param size bytes, a positive multiple of 4096 of at most {@link #MAX_SIZE}
     * @return the memory; the caller closes it
     * @throws IllegalArgumentException if {@code base} or {@code size} is out of range
     * @throws UncheckedIOException     if the system refuses the file or the mapping
     */
    public static SegmentPhysicalMemory open(String name, long base, long size) {
        return open(name, base, size, Backing.best());
    }

    /** As {@link #open(String, long, long)}, with the backing chosen (tests use both). */
    static SegmentPhysicalMemory open(String name, long base, long size, Backing backing) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(backing, "backing");
        if (base < 0 || (base & (BlockAllocator.PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " must be a non-negative multiple of 4096");
        }
        if (size <= 0 || (size & (BlockAllocator.PAGE_SIZE - 1)) != 0 || size > MAX_SIZE) {
            throw new IllegalArgumentException("size=" + size + " must be a positive multiple of 4096 of at most " + MAX_SIZE);
        }
        if (base > Long.MAX_VALUE - size) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " size=0x" + Long.toHexString(size) + " overflows");
        }
        if (backing == Backing.MEMFD && !Libc.HAS_MEMFD) {
            throw new UnsupportedOperationException("memfd_create is not available on " + System.getProperty("os.name"));
        }
        return backing == Backing.MEMFD ? openMemfd(name, base, size) : openTempFile(name, base, size);
    }

    private static SegmentPhysicalMemory openMemfd(String name, long base, long size) {
        int fd = Libc.memfdCreate("vcmm-" + name);
        Arena arena = Arena.ofShared();
        try {
            Libc.ftruncate(fd, size);
            MemorySegment segment;
            // Re-opening /proc/self/fd/N opens the memfd itself (a new description of the same file).
            try (FileChannel channel = FileChannel.open(Path.of("/proc/self/fd/" + fd),
                    StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                segment = channel.map(MapMode.READ_WRITE, 0, size, arena);
            }
            return new SegmentPhysicalMemory(name, base, size, Backing.MEMFD, arena, segment, fd, null);
        } catch (IOException e) {
            closeQuietly(arena, fd, e);
            throw new UncheckedIOException("cannot map memfd 'vcmm-" + name + "' of " + size + " bytes: " + e.getMessage(), e);
        } catch (RuntimeException | Error e) {
            closeQuietly(arena, fd, e);
            throw e;
        }
    }

    private static SegmentPhysicalMemory openTempFile(String name, long base, long size) {
        Arena arena = Arena.ofShared();
        Path file = null;
        try {
            file = Files.createTempFile("vcmm-" + name.replaceAll("[^A-Za-z0-9_.-]", "_") + "-", ".mem");
            MemorySegment segment;
            try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
                raf.setLength(size); // a hole: no block allocated until written
                segment = raf.getChannel().map(MapMode.READ_WRITE, 0, size, arena);
            }
            Path fileToDelete = null;
            try {
                Files.delete(file); // the mapping keeps the pages; the name goes now
            } catch (IOException e) {
                fileToDelete = file; // e.g. Windows will not delete a mapped file: delete at close
            }
            return new SegmentPhysicalMemory(name, base, size, Backing.TEMP_FILE, arena, segment, -1, fileToDelete);
        } catch (IOException e) {
            arena.close();
            deleteQuietly(file, e);
            throw new UncheckedIOException("cannot map a temporary file of " + size + " bytes for '" + name + "': " + e.getMessage(), e);
        } catch (RuntimeException | Error e) {
            arena.close();
            deleteQuietly(file, e);
            throw e;
        }
    }

    private static void closeQuietly(Arena arena, int fd, Throwable cause) {
        try {
            arena.close();
            Libc.close(fd);
        } catch (RuntimeException e) {
            cause.addSuppressed(e);
        }
    }

    private static void deleteQuietly(Path file, Throwable cause) {
        if (file != null) {
            try {
                Files.deleteIfExists(file);
            } catch (IOException e) {
                cause.addSuppressed(e);
            }
        }
    }

    @Override
    public long base() {
        return base;
    }

    @Override
    public long size() {
        return size;
    }

    /** {@return the name given at open, used in messages and in the memfd's name} */
    public String name() {
        return name;
    }

    /**
     * The memfd behind this memory, for mapping its pages a second time. It stays open, and valid, until
     * {@link #close()}; the caller must not close it, and must unmap any mapping of its own first.
     *
     * @return the file descriptor, or empty if the memory is backed by a temporary file
     * @throws IllegalStateException if the memory is closed
     */
    public OptionalInt fd() {
        checkOpen();
        return fd >= 0 ? OptionalInt.of(fd) : OptionalInt.empty();
    }

    /**
     * The whole memory as a segment: offset {@code pa - base()} holds physical address {@code pa}. A view
     * for bulk work and tests: it has no closed flag of its own, so it must not outlive {@link #close()}
     * (an access through it afterwards fails with the arena's {@link IllegalStateException}), and it
     * cannot close the memory.
     *
     * @throws IllegalStateException if the memory is closed
     */
    @Override
    public MemorySegment segment() {
        checkOpen();
        return segment;
    }

    // ---------------------------------------------------------------- 64-bit words

    @Override
    public long lpLong(long pa) {
        return (long) LONG.get(segment, checkWord(pa, Long.BYTES));
    }

    @Override
    public long laLong(long pa) {
        return (long) LONG.getAcquire(segment, checkWord(pa, Long.BYTES));
    }

    @Override
    public void spLong(long pa, long value) {
        LONG.set(segment, checkWord(pa, Long.BYTES), value);
    }

    @Override
    public void soLong(long pa, long value) {
        LONG.setRelease(segment, checkWord(pa, Long.BYTES), value);
    }

    @Override
    public boolean casLong(long pa, long expected, long update) {
        return (boolean) LONG.compareAndSet(segment, checkWord(pa, Long.BYTES), expected, update);
    }

    // ---------------------------------------------------------------- 32-bit words

    @Override
    public int lpInt(long pa) {
        return (int) INT.get(segment, checkWord(pa, Integer.BYTES));
    }

    @Override
    public int laInt(long pa) {
        return (int) INT.getAcquire(segment, checkWord(pa, Integer.BYTES));
    }

    @Override
    public void spInt(long pa, int value) {
        INT.set(segment, checkWord(pa, Integer.BYTES), value);
    }

    @Override
    public void soInt(long pa, int value) {
        INT.setRelease(segment, checkWord(pa, Integer.BYTES), value);
    }

    @Override
    public boolean casInt(long pa, int expected, int update) {
        return (boolean) INT.compareAndSet(segment, checkWord(pa, Integer.BYTES), expected, update);
    }

    // ---------------------------------------------------------------- bulk

    @Override
    public void copyIn(byte[] src, int srcOffset, long pa, int length) {
        long off = checkRange(pa, length);
        Objects.checkFromIndexSize(srcOffset, length, src.length);
        MemorySegment.copy(src, srcOffset, segment, ValueLayout.JAVA_BYTE, off, length);
    }

    @Override
    public void copyIn(ByteBuffer src, long pa) {
        int length = src.remaining();
        long off = checkRange(pa, length);
        MemorySegment.copy(MemorySegment.ofBuffer(src), 0, segment, off, length);
        src.position(src.limit());
    }

    @Override
    public void copyOut(long pa, byte[] dst, int dstOffset, int length) {
        long off = checkRange(pa, length);
        Objects.checkFromIndexSize(dstOffset, length, dst.length);
        MemorySegment.copy(segment, ValueLayout.JAVA_BYTE, off, dst, dstOffset, length);
    }

    @Override
    public void copyOut(long pa, ByteBuffer dst) {
        if (dst.isReadOnly()) {
            throw new ReadOnlyBufferException();
        }
        int length = dst.remaining();
        long off = checkRange(pa, length);
        MemorySegment.copy(segment, off, MemorySegment.ofBuffer(dst), 0, length);
        dst.position(dst.limit());
    }

    /**
     * {@inheritDoc}
     *
     * <p>Here: with a memfd, a range of at least {@link #SKIP_HOLES_THRESHOLD} bytes is zeroed only where the file
     * has data. {@code lseek(SEEK_DATA)} finds the next page that holds data, and the rest of its
     * {@link #ZERO_WINDOW} is filled; the holes between (pages never touched) already read as zero and are skipped in
     * one call however large. So a block of fresh memory costs a system call and stays unallocated until its new
     * owner touches it, and resident memory costs a fill plus one call per window. Punching the resident pages out
     * instead would cost several times a fill here, and the new owner's page faults far more (measured in
     * docs/architecture.md, "Zero on handoff"). Smaller ranges, a temporary-file backing, or a kernel without
     * SEEK_DATA get a plain fill.
     */
    @Override
    public void zero(long pa, long length) {
        long off = checkRange(pa, length);
        if (fd < 0 || length < SKIP_HOLES_THRESHOLD || !seekHoles) {
            segment.asSlice(off, length).fill((byte) 0);
            return;
        }
        long end = off + length;
        long at = off;
        while (at < end) {
            long data;
            fdLock.readLock().lock(); // close() takes the write lock to close the fd: no lseek reaches a closed (reused) fd
            try {
                checkOpen();
                data = Libc.seekData(fd, at, Libc.SEEK_DATA);
            } catch (UncheckedIOException e) {
                seekHoles = false; // e.g. EINVAL: the kernel cannot say; fill from here, and always from now on
                data = at;
            } finally {
                fdLock.readLock().unlock();
            }
            if (data < 0 || data >= end) {
                return; // the rest is a hole: zero already
            }
            // SEEK_HOLE would give the data's exact end, but it visits every resident page up to a hole, however far
            // past the range; a window bounds the call (one per window) and the holes it fills (less than one window).
            long to = Math.min(end, (data + ZERO_WINDOW) & -ZERO_WINDOW);
            segment.asSlice(data, to - data).fill((byte) 0);
            at = to;
        }
    }

    /** {@inheritDoc} Filling with zero writes zeros too: it makes touched-but-untouched pages resident. */
    @Override
    public void fill(long pa, long length, byte value) {
        long off = checkRange(pa, length);
        segment.asSlice(off, length).fill(value);
    }

    // ---------------------------------------------------------------- checks

    // Bulk word runs: one check for the run, then an int-indexed loop over a slice of it, whose bounds and
    // alignment checks the JIT hoists out of the loop (a long-indexed loop over the whole segment kept them
    // per access: 355 against 291 ns for MapUnmapBenchmark.mapUnmapRange4k).

    @Override
    public void spLongs(long pa, int count, long first, long step) {
        MemorySegment t = run(pa, count, Long.BYTES);
        long v = first;
        for (int i = 0; i < count; i++, v += step) {
            t.setAtIndex(LONG_LE, i, v);
        }
    }

    @Override
    public int spLongsIfZero(long pa, int count, long first, long step) {
        MemorySegment t = run(pa, count, Long.BYTES);
        long v = first;
        for (int i = 0; i < count; i++, v += step) {
            if (t.getAtIndex(LONG_LE, i) != 0) {
                return i;
            }
            t.setAtIndex(LONG_LE, i, v);
        }
        return -1;
    }

    @Override
    public void spInts(long pa, int count, int first, int step) {
        MemorySegment t = run(pa, count, Integer.BYTES);
        int v = first;
        for (int i = 0; i < count; i++, v += step) {
            t.setAtIndex(INT_LE, i, v);
        }
    }

    @Override
    public int findNonZeroLong(long pa, int count) {
        MemorySegment t = run(pa, count, Long.BYTES);
        for (int i = 0; i < count; i++) {
            if (t.getAtIndex(LONG_LE, i) != 0) {
                return i;
            }
        }
        return -1;
    }

    @Override
    public int findNonZeroInt(long pa, int count) {
        MemorySegment t = run(pa, count, Integer.BYTES);
        for (int i = 0; i < count; i++) {
            if (t.getAtIndex(INT_LE, i) != 0) {
                return i;
            }
        }
        return -1;
    }

    @Override
    public int clearLongs(long pa, int count) {
        if (count <= SHORT_RUN) { // a few entries (an unmap of some pages): no slice, which C2 did not always elide
            long off = checkWords(pa, count, Long.BYTES);
            int nonZero = 0;
            for (int i = 0; i < count; i++, off += Long.BYTES) {
                if (segment.get(LONG_LE, off) != 0) {
                    nonZero++;
                    segment.set(LONG_LE, off, 0L);
                }
            }
            return nonZero;
        }
        MemorySegment t = run(pa, count, Long.BYTES);
        int nonZero = 0;
        for (int i = 0; i < count; i++) {
            if (t.getAtIndex(LONG_LE, i) != 0) {
                nonZero++;
                t.setAtIndex(LONG_LE, i, 0L);
            }
        }
        return nonZero;
    }

    @Override
    public int clearInts(long pa, int count) {
        MemorySegment t = run(pa, count, Integer.BYTES);
        int nonZero = 0;
        for (int i = 0; i < count; i++) {
            if (t.getAtIndex(INT_LE, i) != 0) {
                nonZero++;
                t.setAtIndex(INT_LE, i, 0);
            }
        }
        return nonZero;
    }

    /** Runs of at most this many words are cleared in place, without a slice. */
    private static final int SHORT_RUN = 32;

    /** {@return the slice of {@code count} aligned words of {@code bytes} at {@code pa}, after one check} */
    private MemorySegment run(long pa, int count, int bytes) {
        return segment.asSlice(checkWords(pa, count, bytes), (long) count * bytes);
    }

    /** {@return the offset of {@code count} aligned words of {@code bytes} at {@code pa}, after one check} */
    private long checkWords(long pa, int count, int bytes) {
        if (count < 0) {
            throw new IllegalArgumentException("count=" + count + " must not be negative");
        }
        long off = checkRange(pa, (long) count * bytes);
        if (count > 0) {
            range.word(pa, bytes); // alignment
        }
        return off;
    }

    private long checkWord(long pa, int bytes) {
        checkOpen();
        return range.word(pa, bytes);
    }

    /** {@return {@code pa - base} after checking the memory is open and {@code [pa, pa + length)} inside} */
    private long checkRange(long pa, long length) {
        checkOpen();
        return range.range(pa, length);
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("physical memory '" + name + "' is closed");
        }
    }

    // ---------------------------------------------------------------- lifecycle

    @Override
    public boolean isClosed() {
        return closed;
    }

    /**
     * Unmaps the memory (closing the arena), then closes the memfd or deletes the temporary file. Idempotent once it
     * has succeeded; thread-safe (closes are serialised by this object's monitor, off the access path).
     *
     * <p>A close refused because a segment of the memory is in use by a native call (a downcall keeps its arena
     * acquired, and a shared arena cannot close under it) throws and changes nothing: the memory stays open and
     * usable, its fd open, and a later close succeeds once the call has returned. Accesses that race a successful
     * close fail with the closed arena's {@link IllegalStateException}, those after it with the closed flag's.
     *
     * @throws IllegalStateException if a segment of the memory is in use by a native call ("busy"); nothing changed
     * @throws UncheckedIOException  if closing the memfd or deleting the temporary file fails; the mapping is gone
     *                               (the memory is closed) and a deletion that failed is tried again by the next close
     */
    @Override
    public synchronized void close() {
        if (!closed) {
            try {
                arena.close(); // first: if a native call holds the memory this throws and nothing has changed
            } catch (IllegalStateException e) {
                if (arena.scope().isAlive()) {
                    throw new IllegalStateException("busy: physical memory '" + name + "' cannot close while a segment of it"
                        + " is in use by a native call (" + e.getMessage() + "); nothing changed: close again once it returns", e);
                }
            }
            fdLock.writeLock().lock(); // no lseek of zero() is running, and none will start: they check the flag under it
            try {
                closed = true; // volatile: later accesses fail on the flag (racing ones failed on the arena)
                if (fd >= 0) {
                    Libc.close(fd); // never retried: Linux releases the fd even when close(2) reports an error
                }
            } finally {
                fdLock.writeLock().unlock();
            }
        }
        if (fileToDelete != null && !fileDeleted) {
            try {
                Files.deleteIfExists(fileToDelete);
                fileDeleted = true;
            } catch (IOException e) {
                throw new UncheckedIOException("cannot delete " + fileToDelete + " (close again to retry)", e);
            }
        }
    }

    @Override
    public String toString() {
        return "SegmentPhysicalMemory{name=" + name + ", base=0x" + Long.toHexString(base) + ", size=0x"
            + Long.toHexString(size) + ", backing=" + backing + (fd >= 0 ? ", fd=" + fd : "")
            + (closed ? ", closed" : "") + "}";
    }
}
