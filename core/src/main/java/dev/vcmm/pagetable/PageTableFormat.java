package dev.vcmm.pagetable;

import java.util.List;

/**
 * A hardware page-table format: geometry (levels, index bits, entry size, leaf sizes) plus a codec of
 * descriptors, as Linux io-pgtable separates them. Implementations are pure functions of their inputs
 * and encode bit-exact what the architecture manual defines, so a hardware walker could read the tables.
 *
 * <p><b>Thread-safety:</b> implementations are immutable and thread-safe.
 *
 * <p>Levels count from 0 at the root. The index of {@code va} at {@code level} is
 * {@code (va >>> levelShift(level)) & ((1 << levelBits(level)) - 1)}. Entries are little-endian words of
 * {@link #entryBytes()} bytes; 32-bit formats use the low 32 bits of the {@code long} values here.
 */
public interface PageTableFormat {

    /** {@return the name the CLI uses, e.g. {@code arm64-4k}} */
    String name();

    /** {@return the number of levels of tables} */
    int levels();

    /** {@return the width of input (virtual) addresses the format translates} */
    int vaBits();

    /** {@return the width of output (physical) addresses the format can encode} */
    int paBits();

    /** {@return the size of one entry: 4 or 8 bytes} */
    int entryBytes();

    /**
     * {@return the position of the lowest virtual-address bit that indexes tables of {@code level}}
     *
     * @param level a table level, 0 at the root
     */
    int levelShift(int level);

    /**
     * {@return the number of virtual-address bits that index tables of {@code level}}
     *
     * @param level a table level, 0 at the root
     */
    int levelBits(int level);

    /**
     * {@return the bytes of table memory to allocate for a table of {@code level}: {@code entryBytes() <<
     * levelBits(level)}, or more where a format pads a small root to the table allocator's smallest slot (the
     * arm64 formats' roots of a few entries); the walk reads only the first {@code 2^levelBits(level)} entries}
     *
     * @param level a table level, 0 at the root
     */
    default long tableBytes(int level) {
        return (long) entryBytes() << levelBits(level);
    }

    /** {@return the leaf sizes the format maps, largest first} */
    List<LeafSize> leafSizes();

    /**
     * {@return the bytes one entry of {@code level} spans}
     *
     * @param level a table level, 0 at the root
     */
    default long entrySpan(int level) {
        return 1L << levelShift(level);
    }

    /**
     * {@return whether {@code va} is a valid input address (inside the format's width, canonical where the
     * architecture requires sign extension)}
     *
     * @param va an input address
     */
    boolean isValidVa(long va);

    /**
     * Checks that the format can express {@code attributes}.
     *
     * @param attributes the permissions and cache policy to check
     * @throws UnsupportedAttributeException naming the format and what it cannot express
     */
    void checkAttributes(Attributes attributes);

    /**
     * {@return the encoding of a table descriptor at {@code level} pointing at the table at {@code tablePa}}
     *
     * @param level   the level of the table that holds the descriptor
     * @param tablePa the physical address of the next-level table
     */
    long tableEntry(int level, long tablePa);

    /**
     * Encodes one entry of a leaf. For the smallest leaf (a single last-level entry) and fixed attributes the
     * encoding must be affine in the physical address below {@link #leafPaLimit}: {@code leafEntry(l, pa) ==
     * leafEntry(l, 0) + (pa / l.size()) * (leafEntry(l, l.size()) - leafEntry(l, 0))}, as in every format here
     * (the address sits in one bit field, shifted). The mapper relies on it to encode a page with one
     * multiply-add; the conformance suite checks it. Larger leaves need not be (armv7-short's supersections
     * scatter PA[39:32]).
     *
     * @param leaf       the leaf size being mapped
     * @param leafPa     the physical address of the leaf's first byte (aligned to {@code leaf.size()})
     * @param i          which entry of the leaf's run, {@code 0 <= i < leaf.entries()}
     * @param attributes already checked with {@link #checkAttributes}
     * @return the encoding of entry {@code i} of the leaf
     * @throws AddressRangeException if a leaf of this size cannot reach {@code leafPa}
     */
    long leafEntry(LeafSize leaf, long leafPa, int i, Attributes attributes);

    /**
     * {@return the first physical address a leaf of {@code leaf}'s size cannot reach: {@code 2^paBits()} by
     * default; lower where only some leaves carry the top address bits (armv7-short: 4 GiB for all but
     * supersections)}
     *
     * @param leaf one of {@link #leafSizes()}
     */
    default long leafPaLimit(LeafSize leaf) {
        return paBits() >= 63 ? Long.MAX_VALUE : 1L << paBits();
    }

    /**
     * A fast test the mapper uses on its hot path instead of decoding; formats override it with bit tests
     * that answer exactly as {@link #decode} would.
     *
     * @param level the level the entry was read at
     * @param raw   the entry, zero-extended to a {@code long}
     * @return whether {@code raw} at {@code level} is a table descriptor
     */
    default boolean isTable(int level, long raw) {
        return decode(level, raw, 0) instanceof Descriptor.Table;
    }

    /**
     * {@return the next-level table address of a table descriptor ({@link #isTable} is true)}
     *
     * @param level the level the entry was read at
     * @param raw   the entry, a table descriptor
     */
    default long tableAddress(int level, long raw) {
        return ((Descriptor.Table) decode(level, raw, 0)).tablePa();
    }

    /**
     * A fast pre-filter the mapper uses on its hot path before it decodes; formats with runs override it
     * with a bit test. It may answer {@code true} for an entry that {@link #decode} finds invalid, never
     * {@code false} for one entry of a run.
     *
     * @param level the level the entry was read at
     * @param raw   the entry, zero-extended to a {@code long}
     * @return whether {@code raw} at {@code level} may be one entry of a multi-entry leaf (a contiguous
     * run, a large page, a supersection)
     */
    default boolean isRunEntry(int level, long raw) {
        return decode(level, raw, 0) instanceof Descriptor.Leaf leaf && leaf.leaf().isRun();
    }

    /**
     * Decodes an entry read at {@code level} while translating {@code va}.
     *
     * @param level the level the entry was read at
     * @param raw   the entry, zero-extended to a {@code long}
     * @param va    the input address being translated (formats whose leaf address depends on it use it)
     * @return what the hardware would make of it; reserved encodings are {@link Descriptor.Invalid}
     */
    Descriptor decode(int level, long raw, long va);
}
