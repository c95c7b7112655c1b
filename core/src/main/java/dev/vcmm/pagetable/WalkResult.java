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
     * A fault, as the hardware would report it.
     *
     * @param va     the input address
     * @param level  the level at which the walk stopped (-1 for an address-size fault before the walk)
     * @param reason the fault class
     * @param detail what the walker found, for messages
     */
    record PageFault(long va, int level, FaultReason reason, String detail) implements WalkResult {
        @Override
        public String toString() {
            return String.format("fault at 0x%x: %s at L%d (%s)", va, reason, level, detail);
        }
    }
}
