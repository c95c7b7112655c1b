package dev.vcmm.pagetable;

import dev.vcmm.spi.PhysicalMemory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The descriptors of one page table's memory, read and written as words of the format's width: 64-bit
 * entries, or 32-bit ones whose values travel in the low half of a {@code long}, zero-extended. Accessors are
 * named by access mode as in {@link dev.vcmm.spi} ({@code lp} plain load, {@code la} acquire load, {@code sp}
 * plain store, {@code so} release store, {@code cas}); they go through the {@link PhysicalMemory} SPI, except
 * the {@code Direct} ones.
 *
 * <p><b>Thread-safety:</b> stateless over a thread-safe memory; every access has exactly the ordering its
 * name says, and no more.
 *
 * <p>The {@code Direct} accessors serve the one-page fast paths: when the memory is one segment
 * ({@link PhysicalMemory#segment()}) they read and write it there, with the segment's own bounds and liveness
 * checks only; the SPI's word calls check the memory's open flag, alignment and range before the segment
 * checks them again, and four of those were half the time of a one-page map + unmap. Without a segment they
 * fall back to the SPI.
 */
final class TableMemory {

    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final java.lang.invoke.VarHandle LONG_LE_ACQUIRE = LONG_LE.varHandle();
    private static final java.lang.invoke.VarHandle INT_LE_ACQUIRE = INT_LE.varHandle();

    private final PhysicalMemory memory;
    private final boolean wide;
    private final int entryBytes;
    /** The memory as one segment for the {@code Direct} accessors, or null: see {@link PhysicalMemory#segment()}. */
    private final MemorySegment direct;
    private final long directBase;

    TableMemory(PhysicalMemory memory, int entryBytes) {
        this.memory = memory;
        this.entryBytes = entryBytes;
        this.wide = entryBytes == 8;
        this.direct = memory.segment();
        this.directBase = memory.base();
    }

    /** {@return whether entries are 64-bit words (else 32-bit)} */
    boolean wide() {
        return wide;
    }

    /** {@return the plain value of the entry at {@code address}} */
    long lp(long address) {
        return wide ? memory.lpLong(address) : Integer.toUnsignedLong(memory.lpInt(address));
    }

    /** {@return the value of the entry at {@code address}, read with acquire semantics (pairs with {@link #so} and {@link #cas})} */
    long la(long address) {
        return wide ? memory.laLong(address) : Integer.toUnsignedLong(memory.laInt(address));
    }

    /** Stores {@code value} at {@code address}, plain. */
    void sp(long address, long value) {
        if (wide) {
            memory.spLong(address, value);
        } else {
            memory.spInt(address, (int) value);
        }
    }

    /** Stores {@code value} at {@code address} with release semantics: what was written before is seen first. */
    void so(long address, long value) {
        if (wide) {
            memory.soLong(address, value);
        } else {
            memory.soInt(address, (int) value);
        }
    }

    /** {@return whether the entry at {@code address} was {@code expected} and is now {@code value} (volatile semantics)} */
    boolean cas(long address, long expected, long value) {
        return wide ? memory.casLong(address, expected, value) : memory.casInt(address, (int) expected, (int) value);
    }

    /** Stores {@code count} entries from {@code address}: {@code first + i * step}, plain. */
    void spRun(long address, int count, long first, long step) {
        if (wide) {
            memory.spLongs(address, count, first, step);
        } else {
            memory.spInts(address, count, (int) first, (int) step);
        }
    }

    /**
     * As {@link #spRun}, for 64-bit entries only, checking each entry is zero before it stores it.
     *
     * @return -1 if every entry was stored, else the index of the first non-zero one (the entries before it were
     * stored; it and the rest are untouched)
     */
    int spLongRunIfZero(long address, int count, long first, long step) {
        return memory.spLongsIfZero(address, count, first, step);
    }

    /** {@return the index of the first non-zero entry among {@code count} from {@code address}, or -1 (plain loads)} */
    int findNonZero(long address, int count) {
        return wide ? memory.findNonZeroLong(address, count) : memory.findNonZeroInt(address, count);
    }

    /**
     * Zeroes {@code count} entries from {@code address} (plain stores).
     *
     * @return how many of them were non-zero
     */
    int clear(long address, int count) {
        return wide ? memory.clearLongs(address, count) : memory.clearInts(address, count);
    }

    /** {@return the non-zero entries among the first {@code count} of the table at {@code table} (plain loads)} */
    int countNonZero(long table, int count) {
        int live = 0;
        MemorySegment s = direct;
        if (s == null) {
            for (int i = 0; i < count; i++) {
                live += lp(table + (long) i * entryBytes) != 0 ? 1 : 0;
            }
        } else if (wide) {
            long off = table - directBase;
            for (int i = 0; i < count; i++) {
                live += s.get(LONG_LE, off + ((long) i << 3)) != 0 ? 1 : 0;
            }
        } else {
            long off = table - directBase;
            for (int i = 0; i < count; i++) {
                live += s.get(INT_LE, off + ((long) i << 2)) != 0 ? 1 : 0;
            }
        }
        return live;
    }

    /**
     * {@return the value of the entry at {@code address}, read with acquire semantics, through the segment if the
     * memory is one (the dirty scan's loop: as {@link #la}, without the SPI's checks)}
     */
    long laDirect(long address) {
        MemorySegment s = direct;
        if (s == null) {
            return la(address);
        }
        long off = address - directBase;
        return wide ? (long) LONG_LE_ACQUIRE.getAcquire(s, off) : Integer.toUnsignedLong((int) INT_LE_ACQUIRE.getAcquire(s, off));
    }

    /**
     * Reads {@code count} 64-bit entries from {@code address} into {@code into[0, count)} with one bulk copy from the
     * segment, then an acquire fence: as {@code count} acquire loads for what follows (the dirty scan's last level).
     * HotSpot copies aligned words single-copy atomically ({@code Copy::conjoint_memory_atomic}); a torn word would be
     * harmless anyway, since the scan decodes a word before it acts on it and changes an entry only by
     * compare-and-set against what it read.
     *
     * @return {@code false}, having read nothing, if the memory is not one segment or entries are 32-bit
     */
    boolean laRun(long address, long[] into, int count) {
        MemorySegment s = direct;
        if (s == null || !wide) {
            return false;
        }
        MemorySegment.copy(s, LONG_LE, address - directBase, into, 0, count);
        java.lang.invoke.VarHandle.acquireFence(); // the copy's loads come before every later load and store
        return true;
    }

    /** {@return the plain value of the entry at {@code address}, through the segment if the memory is one} */
    long lpDirect(long address) {
        MemorySegment s = direct;
        if (s == null) {
            return lp(address);
        }
        long off = address - directBase;
        return wide ? s.get(LONG_LE, off) : Integer.toUnsignedLong(s.get(INT_LE, off));
    }

    /** Stores {@code value} at {@code address}, plain, through the segment if the memory is one. */
    void spDirect(long address, long value) {
        MemorySegment s = direct;
        if (s == null) {
            sp(address, value);
        } else if (wide) {
            s.set(LONG_LE, address - directBase, value);
        } else {
            s.set(INT_LE, address - directBase, (int) value);
        }
    }
}
