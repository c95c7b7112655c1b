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
     * @param why    a short reason, e.g. {@code invalid} or {@code reserved encoding 0b01 at level 3}
     * @param reason the fault the hardware raises for it: {@link FaultReason#TRANSLATION} for an invalid or
     *               reserved entry, {@link FaultReason#ACCESS_FLAG} for an Arm descriptor with AF=0, or
     *               {@link FaultReason#ADDRESS_SIZE} for an output address wider than the configured size
     */
    record Invalid(String why, FaultReason reason) implements Descriptor {

        /** Requires both fields. */
        public Invalid {
            java.util.Objects.requireNonNull(why, "why");
            java.util.Objects.requireNonNull(reason, "reason");
        }

        /**
         * An entry that raises a translation fault.
         *
         * @param why what is wrong with the entry, for a reader
         */
        public Invalid(String why) {
            this(why, FaultReason.TRANSLATION);
        }
    }

    /**
     * A pointer to a next-level table, with the hierarchical limits it places on every leaf below it: x86
     * R/W, U/S and XD in a PML5E, PML4E, PDPTE or PDE (SDM Vol. 3A 4.6); Arm APTable, UXNTable and PXNTable
     * (Arm ARM D8 "Hierarchical control of ... access permissions"). The walker ANDs them into the leaf's
     * permissions.
     *
     * @param tablePa                 physical address of the next-level table
     * @param allowsWrite             {@code false} if no leaf below may be written
     * @param allowsUser              {@code false} if no leaf below may be reached from the unprivileged level
     * @param allowsUserExecute       {@code false} if no leaf below may be executed at the unprivileged level
     * @param allowsPrivilegedExecute {@code false} if no leaf below may be executed at the privileged level
     */
    record Table(long tablePa, boolean allowsWrite, boolean allowsUser, boolean allowsUserExecute,
                 boolean allowsPrivilegedExecute) implements Descriptor {

        /**
         * A table descriptor whose execute limit applies at every privilege (x86 XD).
         *
         * @param tablePa       physical address of the next-level table
         * @param allowsWrite   {@code false} if no leaf below may be written
         * @param allowsUser    {@code false} if no leaf below may be reached from the unprivileged level
         * @param allowsExecute {@code false} if no leaf below may be executed at any level
         */
        public Table(long tablePa, boolean allowsWrite, boolean allowsUser, boolean allowsExecute) {
            this(tablePa, allowsWrite, allowsUser, allowsExecute, allowsExecute);
        }

        /**
         * A table descriptor that limits nothing: formats without hierarchical permissions.
         *
         * @param tablePa physical address of the next-level table
         */
        public Table(long tablePa) {
            this(tablePa, true, true, true, true);
        }

        /** {@return whether this descriptor limits nothing} */
        public boolean limitsNothing() {
            return allowsWrite && allowsUser && allowsUserExecute && allowsPrivilegedExecute;
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
