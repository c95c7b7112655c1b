package dev.vcmm.testing;

import dev.vcmm.spi.PhysicalMemory;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;

/**
 * A sparse heap-backed {@link PhysicalMemory} for tests: 4 KiB pages created on first write (reads of an
 * untouched page see zeros), so a 4 GiB memory costs only what is touched.
 *
 * <p><b>Thread-safety:</b> thread-safe; every access is {@code synchronized}, which is stronger than
 * every access mode the interface names (a plain access here is also ordered).
 */
public final class SimplePhysicalMemory implements PhysicalMemory {

    private static final int PAGE = 4096;

    private final long base;
    private final long size;
    private final Map<Long, ByteBuffer> pages = new HashMap<>();
    private boolean closed;

    /** Creates a memory of {@code size} bytes at physical address {@code base}. */
    public SimplePhysicalMemory(long base, long size) {
        this.base = base;
        this.size = size;
    }

    @Override
    public long base() {
        return base;
    }

    @Override
    public long size() {
        return size;
    }

    /** @return the number of pages written so far. */
    public synchronized int touchedPages() {
        return pages.size();
    }

    @Override
    public synchronized long lpLong(long pa) {
        return page(check(pa, 8), false).getLong((int) (pa % PAGE));
    }

    @Override
    public long laLong(long pa) {
        return lpLong(pa);
    }

    @Override
    public synchronized void spLong(long pa, long value) {
        page(check(pa, 8), true).putLong((int) (pa % PAGE), value);
    }

    @Override
    public void soLong(long pa, long value) {
        spLong(pa, value);
    }

    @Override
    public synchronized boolean casLong(long pa, long expected, long update) {
        if (lpLong(pa) != expected) {
            return false;
        }
        spLong(pa, update);
        return true;
    }

    @Override
    public synchronized int lpInt(long pa) {
        return page(check(pa, 4), false).getInt((int) (pa % PAGE));
    }

    @Override
    public int laInt(long pa) {
        return lpInt(pa);
    }

    @Override
    public synchronized void spInt(long pa, int value) {
        page(check(pa, 4), true).putInt((int) (pa % PAGE), value);
    }

    @Override
    public void soInt(long pa, int value) {
        spInt(pa, value);
    }

    @Override
    public synchronized boolean casInt(long pa, int expected, int update) {
        if (lpInt(pa) != expected) {
            return false;
        }
        spInt(pa, update);
        return true;
    }

    @Override
    public synchronized void copyIn(byte[] src, int srcOffset, long pa, int length) {
        checkRange(pa, length);
        for (int i = 0; i < length; i++) {
            page(pa + i, true).put((int) ((pa + i) % PAGE), src[srcOffset + i]);
        }
    }

    @Override
    public synchronized void copyIn(ByteBuffer src, long pa) {
        byte[] bytes = new byte[src.remaining()];
        checkRange(pa, bytes.length);
        src.get(bytes);
        copyIn(bytes, 0, pa, bytes.length);
    }

    @Override
    public synchronized void copyOut(long pa, byte[] dst, int dstOffset, int length) {
        checkRange(pa, length);
        for (int i = 0; i < length; i++) {
            dst[dstOffset + i] = page(pa + i, false).get((int) ((pa + i) % PAGE));
        }
    }

    @Override
    public synchronized void copyOut(long pa, ByteBuffer dst) {
        byte[] bytes = new byte[dst.remaining()];
        copyOut(pa, bytes, 0, bytes.length);
        dst.put(bytes);
    }

    @Override
    public synchronized void fill(long pa, long length, byte value) {
        checkRange(pa, length);
        for (long i = 0; i < length; i++) {
            page(pa + i, true).put((int) ((pa + i) % PAGE), value);
        }
    }

    /** Drops the pages the range covers wholly (they read as zero again) and clears the rest of the range. */
    @Override
    public synchronized void zero(long pa, long length) {
        checkRange(pa, length);
        long end = pa + length;
        long firstWhole = (pa + PAGE - 1) / PAGE;
        long endWhole = end / PAGE;
        if (firstWhole >= endWhole) {
            clearBytes(pa, end);
            return;
        }
        clearBytes(pa, firstWhole * PAGE);
        clearBytes(endWhole * PAGE, end);
        if (endWhole - firstWhole > pages.size()) {
            pages.keySet().removeIf(k -> k >= firstWhole && k < endWhole);
        } else {
            for (long k = firstWhole; k < endWhole; k++) {
                pages.remove(k);
            }
        }
    }

    private void clearBytes(long from, long to) {
        for (long a = from; a < to; a++) {
            ByteBuffer p = pages.get(a / PAGE);
            if (p != null) {
                p.put((int) (a % PAGE), (byte) 0);
            }
        }
    }

    @Override
    public synchronized boolean isClosed() {
        return closed;
    }

    @Override
    public synchronized void close() {
        closed = true;
        pages.clear();
    }

    private ByteBuffer page(long pa, boolean create) {
        long key = pa / PAGE;
        ByteBuffer p = pages.get(key);
        if (p == null) {
            p = ByteBuffer.allocate(PAGE).order(ByteOrder.LITTLE_ENDIAN);
            if (create) {
                pages.put(key, p);
            }
        }
        return p;
    }

    private long check(long pa, int width) {
        checkRange(pa, width);
        if ((pa & (width - 1)) != 0) {
            throw new IllegalArgumentException("pa=0x" + Long.toHexString(pa) + " is not aligned to " + width + " bytes");
        }
        return pa;
    }

    private void checkRange(long pa, long length) {
        if (closed) {
            throw new IllegalStateException("memory is already closed");
        }
        if (length < 0 || pa < base || pa - base > size - length) {
            throw new IllegalArgumentException("pa=0x" + Long.toHexString(pa) + " length=" + length
                + " is outside [0x" + Long.toHexString(base) + ", +" + size + ")");
        }
    }
}
