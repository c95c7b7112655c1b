package dev.vcmm.heap;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.spi.PhysicalRange;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.ReadOnlyBufferException;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * Sparse on-heap {@link PhysicalMemory}, for tests and as a baseline for the off-heap engine.
 *
 * <p><b>Thread-safety:</b> thread-safe, and lock-free. Word accesses have the access mode their prefix
 * names: 64-bit words go straight to a {@code long[]} element through a {@link VarHandle}; 32-bit words
 * live in half of a {@code long[]} element, so a 32-bit store is a CAS loop on the enclosing long (a
 * plain read-modify-write would lose a concurrent store to the other half). Bulk copies,
 * {@link #fill} and {@link #zero} are plain; their partial words at the ends are merged by CAS so they never clobber a
 * neighbouring byte that another thread writes concurrently. After {@link #close()} every access fails
 * with an {@link IllegalStateException}; a call already past its closed check when another thread
 * closes finishes harmlessly on the old pages.
 *
 * <p><b>Layout:</b> the memory is cut into 64 KiB pages, each a {@code long[8192]} allocated on the first
 * write that touches it; reading a page never written returns zeros and allocates nothing, and filling
 * an untouched page with zero leaves it untouched. So a 64 GiB memory costs its page directory (one
 * reference per 64 KiB: 4 MiB with compressed oops) plus 64 KiB per page written. Pages are published
 * with a CAS on the directory after they are zeroed; a thread that loses the race drops its page and uses
 * the winner's (the io-pgtable-arm pattern). Byte {@code i} of the memory is byte {@code i & 7} of its
 * long, counted from the least significant, which makes every word little-endian whatever the host.
 *
 * <p>Why {@code long[]} and not {@code byte[]} pages: since JDK 24 a
 * {@link MethodHandles#byteArrayViewVarHandle byte-array view} supports only plain get and set (a
 * {@code byte[]}'s elements need not be 8-byte aligned, e.g. with compact object headers), so
 * acquire, release and CAS need {@link MethodHandles#arrayElementVarHandle} on a {@code long[]}.
 *
 * <p><b>Footprint:</b> {@code 4 * ceil(size / 65536)} bytes of directory (8 with uncompressed oops) plus
 * 65,552 bytes per touched page. Sizes up to 2<sup>46</sup> bytes (64 TiB) are accepted.
 */
public final class HeapPhysicalMemory implements PhysicalMemory {

    /** log2 of the page size. */
    static final int PAGE_SHIFT = 16;

    /** Bytes in one lazily allocated page, 64 KiB. */
    public static final int PAGE_BYTES = 1 << PAGE_SHIFT;

    private static final int LONGS_PER_PAGE = PAGE_BYTES >>> 3;
    private static final int PAGE_MASK = PAGE_BYTES - 1;

    /** The largest size accepted: keeps the page count, and the directory, well inside an int index. */
    static final long MAX_SIZE = 1L << 46;

    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class).withInvokeExactBehavior();

    private static final VarHandle CLOSED;

    static {
        try {
            CLOSED = MethodHandles.lookup().findVarHandle(HeapPhysicalMemory.class, "closed", boolean.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final String name;
    private final long base;
    private final long size;
    private final PhysicalRange range;
    private final AtomicReferenceArray<long[]> pages;

    /** Written once, false to true, by CAS in {@link #close()}; read volatile at every entry. */
    @SuppressWarnings("unused") // through CLOSED
    private volatile boolean closed;

    private HeapPhysicalMemory(String name, long base, long size) {
        this.name = name;
        this.base = base;
        this.size = size;
        this.range = new PhysicalRange(name, base, size);
        this.pages = new AtomicReferenceArray<>((int) ((size + PAGE_MASK) >>> PAGE_SHIFT));
    }

    /**
     * Creates a memory named {@code heap} covering {@code [base, base + size)}, all zero.
     *
     * @param base physical address of the first byte, a non-negative multiple of 4096
     * @param size bytes, a positive multiple of 4096 of at most 64 TiB
     * @return the memory; the caller closes it
     * @throws IllegalArgumentException if {@code base} or {@code size} is out of range
     */
    public static HeapPhysicalMemory create(long base, long size) {
        return create("heap", base, size);
    }

    /**
     * Creates a memory covering {@code spec}'s range, named after it in messages.
     *
     * @param spec the range and name
     * @return the memory; the caller closes it
     * @throws IllegalArgumentException if the spec's size is above 64 TiB
     */
    public static HeapPhysicalMemory create(MemorySpec spec) {
        return create(spec.name(), spec.base(), spec.size());
    }

    /**
     * Creates a memory called {@code name} covering {@code [base, base + size)}, all zero.
     *
     * @param name for messages
     * @param base physical address of the first byte, a non-negative multiple of 4096
     * @param size bytes, a positive multiple of 4096 of at most 64 TiB
     * @return the memory; the caller closes it
     * @throws IllegalArgumentException if {@code base} or {@code size} is out of range
     */
    public static HeapPhysicalMemory create(String name, long base, long size) {
        Objects.requireNonNull(name, "name");
        if (base < 0 || (base & (BlockAllocator.PAGE_SIZE - 1)) != 0) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " must be a non-negative multiple of 4096");
        }
        if (size <= 0 || (size & (BlockAllocator.PAGE_SIZE - 1)) != 0 || size > MAX_SIZE) {
            throw new IllegalArgumentException("size=" + size + " must be a positive multiple of 4096 of at most " + MAX_SIZE);
        }
        if (base > Long.MAX_VALUE - size) {
            throw new IllegalArgumentException("base=0x" + Long.toHexString(base) + " size=0x" + Long.toHexString(size) + " overflows");
        }
        return new HeapPhysicalMemory(name, base, size);
    }

    @Override
    public long base() {
        return base;
    }

    @Override
    public long size() {
        return size;
    }

    /** {@return the number of 64 KiB pages allocated so far (a racy snapshot while others write)} */
    public long touchedPages() {
        long n = 0;
        for (int i = 0, count = pages.length(); i < count; i++) {
            if (pages.getPlain(i) != null) { // benign race: a statistic
                n++;
            }
        }
        return n;
    }

    // ---------------------------------------------------------------- 64-bit words

    @Override
    public long lpLong(long pa) {
        long off = checkWord(pa, 8);
        long[] page = pageOrNull(off);
        return page == null ? 0L : (long) LONGS.get(page, longIndex(off));
    }

    @Override
    public long laLong(long pa) {
        long off = checkWord(pa, 8);
        long[] page = pageOrNull(off);
        return page == null ? 0L : (long) LONGS.getAcquire(page, longIndex(off));
    }

    @Override
    public void spLong(long pa, long value) {
        long off = checkWord(pa, 8);
        LONGS.set(pageForWrite(off), longIndex(off), value);
    }

    @Override
    public void soLong(long pa, long value) {
        long off = checkWord(pa, 8);
        LONGS.setRelease(pageForWrite(off), longIndex(off), value);
    }

    @Override
    public boolean casLong(long pa, long expected, long update) {
        long off = checkWord(pa, 8);
        return (boolean) LONGS.compareAndSet(pageForWrite(off), longIndex(off), expected, update);
    }

    // ---------------------------------------------------------------- 32-bit words, halves of a long

    @Override
    public int lpInt(long pa) {
        long off = checkWord(pa, 4);
        long[] page = pageOrNull(off);
        return page == null ? 0 : (int) ((long) LONGS.get(page, longIndex(off)) >>> shift(off));
    }

    @Override
    public int laInt(long pa) {
        long off = checkWord(pa, 4);
        long[] page = pageOrNull(off);
        // An acquire load of the enclosing long orders everything the 32-bit acquire load would.
        return page == null ? 0 : (int) ((long) LONGS.getAcquire(page, longIndex(off)) >>> shift(off));
    }

    @Override
    public void spInt(long pa, int value) {
        long off = checkWord(pa, 4);
        mergePlain(pageForWrite(off), longIndex(off), 0xFFFF_FFFFL << shift(off), (value & 0xFFFF_FFFFL) << shift(off));
    }

    @Override
    public void soInt(long pa, int value) {
        long off = checkWord(pa, 4);
        long[] page = pageForWrite(off);
        int index = longIndex(off);
        int shift = shift(off);
        long mask = 0xFFFF_FFFFL << shift;
        long bits = (value & 0xFFFF_FFFFL) << shift;
        long old = (long) LONGS.get(page, index);
        // A release CAS of the enclosing long: the store of our half is ordered after earlier writes.
        while (!(boolean) LONGS.weakCompareAndSetRelease(page, index, old, (old & ~mask) | bits)) {
            old = (long) LONGS.get(page, index);
        }
    }

    @Override
    public boolean casInt(long pa, int expected, int update) {
        long off = checkWord(pa, 4);
        long[] page = pageForWrite(off);
        int index = longIndex(off);
        int shift = shift(off);
        long mask = 0xFFFF_FFFFL << shift;
        long bits = (update & 0xFFFF_FFFFL) << shift;
        while (true) {
            long old = (long) LONGS.getVolatile(page, index);
            if ((int) (old >>> shift) != expected) {
                return false;
            }
            // A failure here may be a change to the other half only, so re-read and re-check our half.
            if ((boolean) LONGS.compareAndSet(page, index, old, (old & ~mask) | bits)) {
                return true;
            }
        }
    }

    // ---------------------------------------------------------------- bulk

    @Override
    public void copyIn(byte[] src, int srcOffset, long pa, int length) {
        long off = checkRange(pa, length);
        Objects.checkFromIndexSize(srcOffset, length, src.length);
        write(ByteBuffer.wrap(src, srcOffset, length).slice().order(ByteOrder.LITTLE_ENDIAN), off, length);
    }

    @Override
    public void copyIn(ByteBuffer src, long pa) {
        int length = src.remaining();
        long off = checkRange(pa, length);
        write(src.slice().order(ByteOrder.LITTLE_ENDIAN), off, length);
        src.position(src.limit());
    }

    @Override
    public void copyOut(long pa, byte[] dst, int dstOffset, int length) {
        long off = checkRange(pa, length);
        Objects.checkFromIndexSize(dstOffset, length, dst.length);
        read(off, ByteBuffer.wrap(dst, dstOffset, length).slice().order(ByteOrder.LITTLE_ENDIAN), length);
    }

    @Override
    public void copyOut(long pa, ByteBuffer dst) {
        if (dst.isReadOnly()) {
            throw new ReadOnlyBufferException();
        }
        int length = dst.remaining();
        long off = checkRange(pa, length);
        read(off, dst.slice().order(ByteOrder.LITTLE_ENDIAN), length);
        dst.position(dst.limit());
    }

    @Override
    public void fill(long pa, long length, byte value) {
        long off = checkRange(pa, length);
        long pattern = (value & 0xFFL) * 0x0101_0101_0101_0101L;
        long end = off + length;
        while (off < end) {
            int inPage = (int) (off & PAGE_MASK);
            int chunk = (int) Math.min(end - off, PAGE_BYTES - inPage);
            long[] page = value == 0 ? pageOrNull(off) : pageForWrite(off);
            if (page != null) { // an untouched page already reads as zero
                fillInPage(page, inPage, chunk, pattern);
            }
            off += chunk;
        }
    }

    /**
     * {@inheritDoc}
     *
     * <p>Here: every 64 KiB page wholly inside the range is dropped (it reads as zero again and costs nothing); the
     * parts of pages at the ends are filled with zeros, so bytes of those pages outside the range are untouched.
     */
    @Override
    public void zero(long pa, long length) {
        long off = checkRange(pa, length);
        long end = off + length;
        while (off < end) {
            int inPage = (int) (off & PAGE_MASK);
            int chunk = (int) Math.min(end - off, PAGE_BYTES - inPage);
            int index = (int) (off >>> PAGE_SHIFT);
            if (chunk == PAGE_BYTES) {
                pages.setRelease(index, null); // the range is the caller's alone: no store to this page can race
            } else {
                long[] page = pageOrNull(off);
                if (page != null) {
                    fillInPage(page, inPage, chunk, 0L);
                }
            }
            off += chunk;
        }
    }

    private static void fillInPage(long[] page, int from, int length, long pattern) {
        int end = from + length;
        int p = from;
        for (; p < end && (p & 7) != 0; p++) {
            putByte(page, p, (byte) pattern);
        }
        for (; p + 8 <= end; p += 8) {
            page[p >>> 3] = pattern;
        }
        for (; p < end; p++) {
            putByte(page, p, (byte) pattern);
        }
    }

    /** Copies {@code length} bytes from {@code src}'s index 0 on to memory offset {@code off}. */
    private void write(ByteBuffer src, long off, int length) {
        int pos = 0;
        while (pos < length) {
            long at = off + pos;
            int inPage = (int) (at & PAGE_MASK);
            int chunk = Math.min(length - pos, PAGE_BYTES - inPage);
            long[] page = pageForWrite(at);
            int end = inPage + chunk;
            int p = inPage;
            for (; p < end && (p & 7) != 0; p++, pos++) {
                putByte(page, p, src.get(pos));
            }
            for (; p + 8 <= end; p += 8, pos += 8) {
                page[p >>> 3] = src.getLong(pos);
            }
            for (; p < end; p++, pos++) {
                putByte(page, p, src.get(pos));
            }
        }
    }

    /** Copies {@code length} bytes from memory offset {@code off} to {@code dst}'s index 0 on. */
    private void read(long off, ByteBuffer dst, int length) {
        int pos = 0;
        while (pos < length) {
            long at = off + pos;
            int inPage = (int) (at & PAGE_MASK);
            int chunk = Math.min(length - pos, PAGE_BYTES - inPage);
            long[] page = pageOrNull(at);
            if (page == null) {
                for (int end = pos + chunk; pos < end; pos++) {
                    dst.put(pos, (byte) 0);
                }
                continue;
            }
            int end = inPage + chunk;
            int p = inPage;
            for (; p < end && (p & 7) != 0; p++, pos++) {
                dst.put(pos, (byte) (page[p >>> 3] >>> ((p & 7) << 3)));
            }
            for (; p + 8 <= end; p += 8, pos += 8) {
                dst.putLong(pos, page[p >>> 3]);
            }
            for (; p < end; p++, pos++) {
                dst.put(pos, (byte) (page[p >>> 3] >>> ((p & 7) << 3)));
            }
        }
    }

    /** Stores one byte of a page without disturbing concurrent stores to the other bytes of its long. */
    private static void putByte(long[] page, int byteInPage, byte value) {
        int shift = (byteInPage & 7) << 3;
        mergePlain(page, byteInPage >>> 3, 0xFFL << shift, (value & 0xFFL) << shift);
    }

    /** Replaces the {@code mask} bits of {@code page[index]} by {@code bits}, atomically, no ordering. */
    private static void mergePlain(long[] page, int index, long mask, long bits) {
        long old = (long) LONGS.get(page, index);
        while (!(boolean) LONGS.weakCompareAndSetPlain(page, index, old, (old & ~mask) | bits)) {
            old = (long) LONGS.get(page, index);
        }
    }

    // ---------------------------------------------------------------- pages

    private long[] pageOrNull(long off) {
        // Acquire pairs with the volatile CAS in pageForWrite: a page seen is a page seen zeroed.
        return pages.getAcquire((int) (off >>> PAGE_SHIFT));
    }

    private long[] pageForWrite(long off) {
        int index = (int) (off >>> PAGE_SHIFT);
        long[] page = pages.getAcquire(index);
        if (page != null) {
            return page;
        }
        long[] fresh = new long[LONGS_PER_PAGE];
        long[] witness = pages.compareAndExchange(index, null, fresh);
        return witness == null ? fresh : witness; // the loser drops its page for the winner's
    }

    private static int longIndex(long off) {
        return (int) ((off & PAGE_MASK) >>> 3);
    }

    private static int shift(long off) {
        return (int) (off & 4) << 3;
    }

    // ---------------------------------------------------------------- checks

    /** {@return {@code pa - base} after checking the memory is open and the word aligned and inside} */
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

    /** Marks the memory closed and drops its pages for the collector. Idempotent and thread-safe. */
    @Override
    public void close() {
        if (CLOSED.compareAndSet(this, false, true)) {
            for (int i = 0, count = pages.length(); i < count; i++) {
                pages.setPlain(i, null); // a straggler still writing may re-install a page: garbage with us
            }
        }
    }

    @Override
    public String toString() {
        return "HeapPhysicalMemory{name=" + name + ", base=0x" + Long.toHexString(base) + ", size=0x"
            + Long.toHexString(size) + (closed ? ", closed" : "") + "}";
    }
}
