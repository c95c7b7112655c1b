package dev.vcmm.pagetable;

/**
 * The outcome of a hardware walk: a {@link Translation} or a {@link PageFault}.
 *
 * <p><b>Thread-safety:</b> immutable values.
 */
public sealed interface WalkResult permits WalkResult.Translation, WalkResult.PageFault {

    /** {@return whether the walk found a mapping that allows the access} */
    default boolean isMapped() {
        return this instanceof Translation;
    }

    /**
     * A successful translation.
     *
     * @param va         the input address
     * @param pa         the physical address it reaches
     * @param leafSize   bytes of the leaf that maps it (the TLB entry a real MMU would cache)
     * @param level      the table level of the leaf
     * @param attributes the leaf's permissions and memory type
     */
    record Translation(long va, long pa, long leafSize, int level, Attributes attributes) implements WalkResult {
        @Override
        public String toString() {
            return String.format("0x%x -> 0x%x (%s leaf at L%d, %s)", va, pa, LeafSize.humanSize(leafSize), level, attributes);
        }
    }

    /**
     * A fault, as the hardware would report it. A nested (two-stage) walk says which stage faulted: a stage-2 fault
     * names the intermediate physical address (IPA) that stage 2 could not translate and the stage-1 level whose
     * table read needed it (or -1 when it was the final output address), as an SMMU's event record does
     * ({@code F_TRANSLATION} with {@code S2}, {@code CLASS=TT} for a table read, {@code IPA}).
     *
     * @param va          the input address
     * @param level       the level at which the walk of the faulting stage stopped (-1 for an address-size fault
     *                    before the walk)
     * @param reason      the fault class
     * @param detail      what the walker found, for messages
     * @param stage       0 for a single-stage walk, else the stage that faulted: 1 or 2
     * @param stage1Level for a stage-2 fault, the stage-1 level whose table read faulted, or -1 for the output address;
     *                    -1 otherwise
     * @param ipa         for a stage-2 fault, the IPA stage 2 could not translate; 0 otherwise
     */
    record PageFault(long va, int level, FaultReason reason, String detail, int stage, int stage1Level, long ipa)
        implements WalkResult {

        /**
         * A fault of a single-stage walk.
         *
         * @param va     the input address
         * @param level  the level at which the walk stopped (-1 for an address-size fault before the walk)
         * @param reason the fault class
         * @param detail what the walker found, for messages
         */
        public PageFault(long va, int level, FaultReason reason, String detail) {
            this(va, level, reason, detail, 0, -1, 0);
        }

        @Override
        public String toString() {
            String where = switch (stage) {
                case 1 -> "stage 1 ";
                case 2 -> String.format("stage 2 (IPA 0x%x, %s) ", ipa, stage1Level < 0 ? "output address"
                    : "stage-1 table read at L" + stage1Level);
                default -> "";
            };
            return String.format("fault at 0x%x: %s%s at L%d (%s)", va, where, reason, level, detail);
        }
    }
}
