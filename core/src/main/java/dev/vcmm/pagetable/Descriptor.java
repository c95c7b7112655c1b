package dev.vcmm.pagetable;

/**
 * A page-table entry as a format decodes it: invalid, a pointer to a next-level table, or a leaf.
 *
 * <p><b>Thread-safety:</b> immutable values.
 */
public sealed interface Descriptor {

    /** The shared invalid descriptor. */
    Invalid INVALID = new Invalid("invalid");

    /**
     * An entry that maps nothing: invalid, or a reserved encoding the hardware treats as a translation fault.
     *
     * @param why a short reason, e.g. {@code invalid} or {@code reserved encoding 0b01 at level 3}
     */
    record Invalid(String why) implements Descriptor {
    }

    /**
     * A pointer to a next-level table.
     *
     * @param tablePa physical address of the next-level table
     */
    record Table(long tablePa) implements Descriptor {
    }

    /**
     * A leaf mapping.
     *
     * @param pa         the physical address the looked-up virtual address translates to (offset included)
     * @param leaf       the leaf size it belongs to (a run's whole size for contiguous runs)
     * @param attributes permissions and memory type
     */
    record Leaf(long pa, LeafSize leaf, Attributes attributes) implements Descriptor {
    }
}
