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
     * A pointer to a next-level table, with the hierarchical limits it places on every leaf below it (x86
     * R/W, U/S and XD in a PML4E, PDPTE or PDE): the walker ANDs them into the leaf's permissions.
     *
     * @param tablePa       physical address of the next-level table
     * @param allowsWrite   {@code false} if no leaf below may be written
     * @param allowsUser    {@code false} if no leaf below may be reached from the unprivileged level
     * @param allowsExecute {@code false} if no leaf below may be executed
     */
    record Table(long tablePa, boolean allowsWrite, boolean allowsUser, boolean allowsExecute) implements Descriptor {

        /** A table descriptor that limits nothing: formats without hierarchical permissions. */
        public Table(long tablePa) {
            this(tablePa, true, true, true);
        }
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
