package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;

/**
 * A fault a device took during DMA, as an SMMU would record it in its fault registers.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param device  the device
 * @param address the device (input) address that faulted
 * @param access  the kind of access
 * @param reason  the fault class: translation, permission, address size, or secure
 * @param level   the table level at which the walk stopped (-1 before the walk, e.g. an address-size fault)
 * @param detail  what the walker found, for messages
 * @param stage   0 for a single-stage translation, else the stage of a nested translation that faulted: 1 or 2
 * @param stage1Level for a stage-2 fault, the stage-1 level whose table read faulted, or -1 when stage 2 faulted on
 *                the output address; -1 otherwise
 * @param ipa     for a stage-2 fault, the intermediate physical address stage 2 could not translate; 0 otherwise
 */
public record DeviceFault(Device device, long address, Access access, FaultReason reason, int level, String detail,
                          int stage, int stage1Level, long ipa) {

    /**
     * A fault of a single-stage translation.
     *
     * @param device  the device
     * @param address the device (input) address that faulted
     * @param access  the kind of access
     * @param reason  the fault class
     * @param level   the table level at which the walk stopped
     * @param detail  what the walker found, for messages
     */
    public DeviceFault(Device device, long address, Access access, FaultReason reason, int level, String detail) {
        this(device, address, access, reason, level, detail, 0, -1, 0);
    }

    /** @return e.g. {@code device gpu: READ at 0x10200000: TRANSLATION fault at L3 (invalid (entry 0x0 at ...))} */
    @Override
    public String toString() {
        String where = switch (stage) {
            case 1 -> "stage 1 ";
            case 2 -> String.format("stage 2 (IPA 0x%x, %s) ", ipa, stage1Level < 0 ? "output address"
                : "stage-1 table read at L" + stage1Level);
            default -> "";
        };
        return String.format("device %s: %s at 0x%x: %s%s fault at L%d (%s)", device.name(), access, address, where, reason,
            level, detail);
    }
}
