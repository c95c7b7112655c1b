package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.Walker;
import dev.vcmm.pagetable.WalkResult;

import java.util.List;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A bus master: a device behind an IOMMU with a page-table format, a one-to-one device, or a CPU with its
 * MMU format. It has two translation-table slots, low and high (Arm's TTBR0 and TTBR1): activating an
 * association programs the VCM's table root into the slots its {@link AssociationMode} names, and the
 * device then translates through whatever is programmed, reading only physical memory, as hardware would.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #translate} may run in any number of threads, concurrently
 * with backing and unbacking (it sees each page-table entry either before or after a change). The slots
 * change only under the {@link Vcmm}'s graph lock and are published with volatile writes. As with real
 * hardware, a walk must not race with the deassociation that frees the table it walks: deactivate first
 * (new walks then fault), let walks in flight finish, then deassociate.
 */
public final class Device {

    static final int LOW = 0;
    static final int HIGH = 1;

    private final Vcmm vcmm;
    private final String name;
    private final DeviceKind kind;
    private final PageTableFormat format;
    private final boolean secure;
    final List<Association> associations = new CopyOnWriteArrayList<>();
    /** The associations whose tables are programmed, by slot; written under the graph lock, read by anyone. */
    private volatile Association low;
    private volatile Association high;

    Device(Vcmm vcmm, String name, DeviceKind kind, PageTableFormat format, boolean secure) {
        this.vcmm = vcmm;
        this.name = name;
        this.kind = kind;
        this.format = format;
        this.secure = secure;
    }

    /** @return the device's name, unique in its {@link Vcmm} */
    public String name() {
        return name;
    }

    /** @return how the device reaches memory */
    public DeviceKind kind() {
        return kind;
    }

    /** @return the page-table format of its IOMMU or MMU; {@code null} for a one-to-one device */
    public PageTableFormat format() {
        return format;
    }

    /** @return whether the device may reach secure memory */
    public boolean isSecure() {
        return secure;
    }

    /** @return the VCMM this device belongs to */
    public Vcmm vcmm() {
        return vcmm;
    }

    /** @return the device's associations, active or not (a snapshot) */
    public List<Association> associations() {
        return List.copyOf(associations);
    }

    /** @return the association programmed in the low slot, or {@code null} */
    public Association activeLow() {
        return slot(LOW);
    }

    /** @return the association programmed in the high slot, or {@code null} */
    public Association activeHigh() {
        return slot(HIGH);
    }

    Association slot(int i) {
        return i == LOW ? low : high;
    }

    void program(int i, Association a) {
        if (i == LOW) {
            low = a;
        } else {
            high = a;
        }
    }

    /** @return the slot an address goes through: the top bit of the format's input address selects high */
    int slotFor(long address) {
        if (format == null) {
            return LOW;
        }
        boolean high = format.isValidVa(-1L) ? address < 0 : ((address >>> (format.vaBits() - 1)) & 1) != 0;
        return high ? HIGH : LOW;
    }

    /**
     * Translates a device address through the tables programmed into this device, with no permission check.
     *
     * @return the translation, or the fault the device would take
     */
    public WalkResult translate(long address) {
        return translate(address, null, false);
    }

    /**
     * Translates a device address for an access, checking permissions and the secure attribute.
     *
     * @param address  the device (input) address
     * @param access   the kind of access
     * @param fromUser whether the access is unprivileged
     * @return the translation, or the fault the device would take
     */
    public WalkResult translate(long address, Access access, boolean fromUser) {
        Association a = slot(slotFor(address));
        if (a == null) {
            return new WalkResult.PageFault(address, 0, FaultReason.TRANSLATION, "device " + name + " has no active table for this address");
        }
        WalkResult r;
        if (kind == DeviceKind.ONE_TO_ONE) {
            r = a.vcm().translateOneToOne(address, access, fromUser);
        } else {
            r = access == null
                ? Walker.translate(format, vcmm.pageTableMemory().memory(), a.root(), address)
                : Walker.translate(format, vcmm.pageTableMemory().memory(), a.root(), address, access, fromUser);
        }
        if (r instanceof WalkResult.Translation t && !secure && vcmm.isSecurePhysical(t.pa())) {
            return new WalkResult.PageFault(address, t.level(), FaultReason.SECURE,
                String.format("device %s is not secure and 0x%x is secure memory", name, t.pa()));
        }
        return r;
    }

    @Override
    public String toString() {
        return "Device{" + name + ", " + kind + (format != null ? " " + format.name() : "") + (secure ? ", secure" : "") + '}';
    }

    void checkOwner(Vcmm owner) {
        if (vcmm != Objects.requireNonNull(owner)) {
            throw new IllegalArgumentException("foreign handle: " + this + " belongs to another Vcmm");
        }
    }
}
