package dev.vcmm;

import java.util.Arrays;
import java.util.function.LongConsumer;

/**
 * The pages of a range that devices wrote, one bit per page, as {@link DirtyTracking#readAndClear} returns them
 * (iommufd's dirty bitmap). Bit {@code i} stands for the page at {@code address() + i * pageSize()}; the page size
 * is the smallest leaf of the VCM's formats, and a dirty block or contiguous run sets the bits of all its pages.
 *
 * <p><b>Thread-safety:</b> immutable once returned; safe to share.
 */
public final class DirtyBitmap {

    private final long address;
    private final long length;
    private final long pageSize;
    private final int pageShift;
    private final long[] bits;

    DirtyBitmap(long address, long length, long pageSize) {
        long pages = length / pageSize;
        if (pages > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("length=0x" + Long.toHexString(length) + " is more than 2^31-1 pages of "
                + pageSize + " bytes: read the range in parts");
        }
        this.address = address;
        this.length = length;
        this.pageSize = pageSize;
        this.pageShift = Long.numberOfTrailingZeros(pageSize);
        this.bits = new long[(int) ((pages + 63) >>> 6)];
    }

    /** Marks the pages of {@code [va, va + len)}, which lies in the range and is aligned to the page size. */
    void mark(long va, long len) {
        int from = (int) ((va - address) >>> pageShift);
        int to = (int) ((va - address + len) >>> pageShift);
        for (int i = from; i < to; i++) {
            bits[i >>> 6] |= 1L << i;
        }
    }

    /** {@return the first address of the range} */
    public long address() {
        return address;
    }

    /** {@return the bytes of the range} */
    public long length() {
        return length;
    }

    /** {@return the bytes one bit stands for} */
    public long pageSize() {
        return pageSize;
    }

    /** {@return the number of pages (bits) in the range} */
    public int pages() {
        return (int) (length >>> pageShift);
    }

    /**
     * {@return whether the page holding {@code a} is dirty}
     *
     * @param a an address in the range
     * @throws IllegalArgumentException if {@code a} is outside the range
     */
    public boolean isDirty(long a) {
        if (Long.compareUnsigned(a - address, length) >= 0) {
            throw new IllegalArgumentException(String.format("address=0x%x is outside the bitmap's range [0x%x, 0x%x)",
                a, address, address + length));
        }
        int i = (int) ((a - address) >>> pageShift);
        return (bits[i >>> 6] & 1L << i) != 0;
    }

    /** {@return the number of dirty pages} */
    public int dirtyPages() {
        int n = 0;
        for (long w : bits) {
            n += Long.bitCount(w);
        }
        return n;
    }

    /** {@return the bytes of the dirty pages: {@code dirtyPages() * pageSize()}} */
    public long dirtyBytes() {
        return dirtyPages() * pageSize;
    }

    /**
     * Calls {@code action} with the address of every dirty page, in address order.
     *
     * @param action receives each dirty page's first address
     */
    public void forEachDirtyPage(LongConsumer action) {
        for (int w = 0; w < bits.length; w++) {
            long word = bits[w];
            while (word != 0) {
                int i = (w << 6) + Long.numberOfTrailingZeros(word);
                action.accept(address + ((long) i << pageShift));
                word &= word - 1;
            }
        }
    }

    /** {@return a copy of the bits: bit {@code i % 64} of word {@code i / 64} is page {@code i}} */
    public long[] toLongArray() {
        return bits.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof DirtyBitmap b && b.address == address && b.length == length && b.pageSize == pageSize
            && Arrays.equals(b.bits, bits);
    }

    @Override
    public int hashCode() {
        return Long.hashCode(address) * 31 + Arrays.hashCode(bits);
    }

    @Override
    public String toString() {
        return String.format("DirtyBitmap{0x%x+0x%x, %d of %d pages of %d bytes dirty}", address, length, dirtyPages(), pages(),
            pageSize);
    }
}
