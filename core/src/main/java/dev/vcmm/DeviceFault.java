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
 */
public record DeviceFault(Device device, long address, Access access, FaultReason reason, int level, String detail) {

    /** @return e.g. {@code device gpu: READ at 0x10200000: TRANSLATION fault at L3 (invalid (entry 0x0 at ...))} */
    @Override
    public String toString() {
        return String.format("device %s: %s at 0x%x: %s fault at L%d (%s)", device.name(), access, address, reason, level, detail);
    }
}
