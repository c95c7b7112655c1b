package dev.vcmm.spi;

/**
 * The address checks every {@link PhysicalMemory} implementation makes at its public entries: one
 * overflow-safe test per call, with a message naming the address, the length and the memory's range.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param name a short name of the memory, for messages
 * @param base the physical address of the first byte
 * @param size the number of bytes
 */
public record PhysicalRange(String name, long base, long size) {

    /**
     * Checks a word access.
     *
     * @param pa    physical address of the word
     * @param bytes the word's size, a power of two
     * @return {@code pa - base} after checking that the word of {@code bytes} bytes at {@code pa} is naturally
     * aligned and inside
     * @throws IllegalArgumentException naming {@code pa} otherwise
     */
    public long word(long pa, int bytes) {
        if ((pa & (bytes - 1)) != 0) { // base is 4096-aligned, so pa's alignment is the offset's
            throw new IllegalArgumentException("pa=0x" + Long.toHexString(pa) + " is not aligned to the " + bytes
                + "-byte word accessed in physical memory '" + name + "'");
        }
        if (pa < base || pa - base > size - bytes) {
            throw outOfRange(pa, bytes);
        }
        return pa - base;
    }

    /**
     * Checks a bulk access.
     *
     * @param pa     physical address of the first byte
     * @param length bytes
     * @return {@code pa - base} after checking that {@code [pa, pa + length)} is inside
     * @throws IllegalArgumentException naming {@code pa} and {@code length} otherwise
     */
    public long range(long pa, long length) {
        if (length < 0 || pa < base || pa - base > size - length) {
            throw outOfRange(pa, length);
        }
        return pa - base;
    }

    private IllegalArgumentException outOfRange(long pa, long length) {
        return new IllegalArgumentException("pa=0x" + Long.toHexString(pa) + " length=" + length
            + " is outside physical memory '" + name + "' [base=0x" + Long.toHexString(base)
            + ", base+size=0x" + Long.toHexString(base + size) + ")");
    }
}
