package dev.vcmm.spi;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * Simulated physical memory of one memory type: the narrow interface through which the core reads and
 * writes page tables and data, so that it can run over an off-heap segment (ffm-backend) or a plain
 * heap array ({@link dev.vcmm.heap.HeapPhysicalMemory}) alike.
 *
 * <p><b>Thread-safety:</b> implementations are thread-safe; every method may be called from any
 * thread. Word accesses follow the access mode their prefix names (see the package documentation):
 * a release store ({@code so*}) made by one thread is seen by an acquire load ({@code la*}) of the
 * same word in another thread together with everything written before it. Plain accesses give no
 * ordering. Bulk copies are plain.
 *
 * <p>Addresses are absolute physical addresses in {@code [base(), base() + size())}. Words are
 * little-endian and must be naturally aligned (a 64-bit word on a multiple of 8, a 32-bit word on a
 * multiple of 4); a misaligned or out-of-range address gets an {@link IllegalArgumentException} with
 * the address in its message and changes nothing. After {@link #close()} every access fails with an
 * {@link IllegalStateException}.
 */
public interface PhysicalMemory extends AutoCloseable {

    /** {@return the physical address of the first byte} */
    long base();

    /** {@return the number of bytes, a multiple of 4096} */
    long size();

    /**
     * {@return the plain value of the 64-bit little-endian word at {@code pa}}
     *
     * @param pa physical address of the word, 8-byte aligned
     */
    long lpLong(long pa);

    /**
     * {@return the value of the 64-bit word at {@code pa}, read with acquire semantics}
     *
     * @param pa physical address of the word, 8-byte aligned
     */
    long laLong(long pa);

    /**
     * Stores a 64-bit little-endian word at {@code pa} with no ordering.
     *
     * @param pa    physical address of the word, 8-byte aligned
     * @param value the word
     */
    void spLong(long pa, long value);

    /**
     * Stores a 64-bit word at {@code pa} with release semantics: earlier writes become visible first.
     *
     * @param pa    physical address of the word, 8-byte aligned
     * @param value the word
     */
    void soLong(long pa, long value);

    /**
     * Atomically sets the 64-bit word at {@code pa} to {@code update} if it equals {@code expected}.
     *
     * @param pa       physical address of the word, 8-byte aligned
     * @param expected the value the word must hold
     * @param update   the value to store
     * @return {@code true} if the word was updated; {@code false} if another value was found.
     */
    boolean casLong(long pa, long expected, long update);

    /**
     * {@return the plain value of the 32-bit little-endian word at {@code pa}}
     *
     * @param pa physical address of the word, 4-byte aligned
     */
    int lpInt(long pa);

    /**
     * {@return the value of the 32-bit word at {@code pa}, read with acquire semantics}
     *
     * @param pa physical address of the word, 4-byte aligned
     */
    int laInt(long pa);

    /**
     * Stores a 32-bit little-endian word at {@code pa} with no ordering.
     *
     * @param pa    physical address of the word, 4-byte aligned
     * @param value the word
     */
    void spInt(long pa, int value);

    /**
     * Stores a 32-bit word at {@code pa} with release semantics.
     *
     * @param pa    physical address of the word, 4-byte aligned
     * @param value the word
     */
    void soInt(long pa, int value);

    /**
     * Atomically sets the 32-bit word at {@code pa} to {@code update} if it equals {@code expected}.
     *
     * @param pa       physical address of the word, 4-byte aligned
     * @param expected the value the word must hold
     * @param update   the value to store
     * @return {@code true} if the word was updated; {@code false} if another value was found.
     */
    boolean casInt(long pa, int expected, int update);

    /**
     * Copies {@code length} bytes of {@code src} starting at {@code srcOffset} to physical memory at
     * {@code pa}.
     *
     * @param src       the bytes
     * @param srcOffset index of the first byte in {@code src}
     * @param pa        physical address of the first byte written
     * @param length    number of bytes
     */
    void copyIn(byte[] src, int srcOffset, long pa, int length);

    /**
     * Copies the remaining bytes of {@code src} to physical memory at {@code pa}; the buffer is consumed.
     *
     * @param src the bytes, from its position to its limit
     * @param pa  physical address of the first byte written
     */
    void copyIn(ByteBuffer src, long pa);

    /**
     * Copies {@code length} bytes at {@code pa} into {@code dst} starting at {@code dstOffset}.
     *
     * @param pa        physical address of the first byte read
     * @param dst       where the bytes go
     * @param dstOffset index in {@code dst} of the first byte
     * @param length    number of bytes
     */
    void copyOut(long pa, byte[] dst, int dstOffset, int length);

    /**
     * Fills {@code dst}'s remaining bytes from physical memory at {@code pa}; the buffer is filled.
     *
     * @param pa  physical address of the first byte read
     * @param dst where the bytes go, from its position to its limit
     */
    void copyOut(long pa, ByteBuffer dst);

    /**
     * Stores {@code count} consecutive 64-bit words from {@code pa}: {@code first}, {@code first + step},
     * {@code first + 2 * step}, ... with plain stores: a run of page-table entries in one call.
     *
     * @param pa    physical address of the first word, 8-byte aligned
     * @param count number of words
     * @param first the first word
     * @param step  what each word adds to the one before
     */
    default void spLongs(long pa, int count, long first, long step) {
        for (int i = 0; i < count; i++) {
            spLong(pa + ((long) i << 3), first + i * step);
        }
    }

    /**
     * Stores {@code count} consecutive 64-bit words from {@code pa} as {@link #spLongs} does, but only while
     * the word found is zero: at the first non-zero word it stops, leaving that word and the rest untouched.
     *
     * @param pa    physical address of the first word, 8-byte aligned
     * @param count number of words
     * @param first the first word
     * @param step  what each word adds to the one before
     * @return -1 if every word was stored, else the index of the first non-zero word (the words before it
     * were stored)
     */
    default int spLongsIfZero(long pa, int count, long first, long step) {
        for (int i = 0; i < count; i++) {
            long at = pa + ((long) i << 3);
            if (lpLong(at) != 0) {
                return i;
            }
            spLong(at, first + i * step);
        }
        return -1;
    }

    /**
     * Stores {@code count} consecutive 32-bit words from {@code pa}: {@code first + i * step}, plain.
     *
     * @param pa    physical address of the first word, 4-byte aligned
     * @param count number of words
     * @param first the first word
     * @param step  what each word adds to the one before
     */
    default void spInts(long pa, int count, int first, int step) {
        for (int i = 0; i < count; i++) {
            spInt(pa + ((long) i << 2), first + i * step);
        }
    }

    /**
     * {@return the index of the first non-zero 64-bit word among {@code count} at {@code pa}, or -1 (plain loads)}
     *
     * @param pa    physical address of the first word, 8-byte aligned
     * @param count number of words
     */
    default int findNonZeroLong(long pa, int count) {
        for (int i = 0; i < count; i++) {
            if (lpLong(pa + ((long) i << 3)) != 0) {
                return i;
            }
        }
        return -1;
    }

    /**
     * {@return the index of the first non-zero 32-bit word among {@code count} at {@code pa}, or -1 (plain loads)}
     *
     * @param pa    physical address of the first word, 4-byte aligned
     * @param count number of words
     */
    default int findNonZeroInt(long pa, int count) {
        for (int i = 0; i < count; i++) {
            if (lpInt(pa + ((long) i << 2)) != 0) {
                return i;
            }
        }
        return -1;
    }

    /**
     * Sets {@code count} consecutive 64-bit words at {@code pa} to zero (plain stores).
     *
     * @param pa    physical address of the first word, 8-byte aligned
     * @param count number of words
     * @return how many of them were non-zero before
     */
    default int clearLongs(long pa, int count) {
        int nonZero = 0;
        for (int i = 0; i < count; i++) {
            long at = pa + ((long) i << 3);
            if (lpLong(at) != 0) {
                nonZero++;
                spLong(at, 0);
            }
        }
        return nonZero;
    }

    /**
     * Sets {@code count} consecutive 32-bit words at {@code pa} to zero (plain stores).
     *
     * @param pa    physical address of the first word, 4-byte aligned
     * @param count number of words
     * @return how many of them were non-zero before
     */
    default int clearInts(long pa, int count) {
        int nonZero = 0;
        for (int i = 0; i < count; i++) {
            long at = pa + ((long) i << 2);
            if (lpInt(at) != 0) {
                nonZero++;
                spInt(at, 0);
            }
        }
        return nonZero;
    }

    /**
     * The whole memory as one segment, for hot paths that check their own addresses once (a page table
     * indexes inside a table whose address it checked when it installed it): offset {@code pa - base()}
     * holds physical address {@code pa}. The segment still checks its own bounds and liveness, so a stray
     * index or an access after {@link #close()} fails with the segment's exception, never with a crash.
     *
     * @return the segment, or {@code null} if this memory is not one segment (the default)
     * @throws IllegalStateException if the memory is closed
     */
    default MemorySegment segment() {
        return null;
    }

    /**
     * Sets {@code length} bytes at {@code pa} to {@code value} (plain stores).
     *
     * @param pa     physical address of the first byte
     * @param length number of bytes
     * @param value  the byte to store
     */
    void fill(long pa, long length, byte value);

    /**
     * Makes {@code [pa, pa + length)} read as zero: what a memory type does to memory it hands to a new owner, so
     * that no owner reads a previous owner's bytes. Unlike {@code fill(pa, length, 0)} an implementation may give the
     * pages back to the system instead of writing them (a hole in a memfd, a dropped heap page): they cost nothing
     * until touched again, and zeroing a large range is one cheap call.
     *
     * <p>Contract: when it returns, every byte of the range reads as zero through every path to it (word reads,
     * copies, {@link #segment()}, and any other mapping of the same pages, such as a HOST mapping), and no byte
     * outside the range has changed. The caller owns the range: an access to it that runs concurrently may see old
     * bytes or zeros, and a store that races it may be lost. The default fills with zeros.
     *
     * @param pa     physical address of the first byte
     * @param length number of bytes
     * @throws IllegalArgumentException if the range is not inside the memory (nothing changed)
     * @throws IllegalStateException    if the memory is closed
     */
    default void zero(long pa, long length) {
        fill(pa, length, (byte) 0);
    }

    /** {@return {@code true} once {@link #close()} has been called} */
    boolean isClosed();

    /**
     * Releases the memory. Idempotent; after it every access fails with an {@link IllegalStateException}
     * saying the memory is closed.
     */
    @Override
    void close();
}
