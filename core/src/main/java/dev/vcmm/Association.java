package dev.vcmm;

/**
 * The link between a {@link Vcm} and a {@link Device} (the original VCMM's "associated VCM"), with the slot
 * mode it uses. Inactive when made; {@link #activate()} programs the VCM's table root for the device's
 * format into the device, {@link #deactivate()} clears it; {@link #deassoc()} removes the link and is
 * refused while active.
 *
 * <p><b>PASIDs:</b> an association made with {@link Vcmm#assoc(Vcm, Device, int)} names a PASID (1 to
 * {@link #MAX_PASID}): activating it programs the VCM's table for that PASID alone, and the device reaches it
 * through the DMA calls that name the PASID ({@link Device#read(int, long, byte[], int, int)}, ...). A device may
 * have one active association per PASID, any number at once. PASID 0 is the default association: the calls without
 * a PASID use it, through the low and high slots of its {@link AssociationMode}.
 *
 * <p><b>Thread-safety:</b> thread-safe: every state change goes through the {@link Vcmm}'s graph lock.
 */
public final class Association {

    private final Vcm vcm;
    private final Device device;
    /** Changed by {@link #setMode} under the graph lock while inactive. */
    private volatile AssociationMode mode;
    private final int pasid;
    private volatile boolean active;
    /** Deactivated inside an {@link InvalidationBatch} that has not committed yet: its IOTLB entries may remain. */
    private volatile InvalidationBatch pendingBatch;
    private volatile boolean removed;

    /** The largest PASID: PCIe PASIDs have 20 bits. */
    public static final int MAX_PASID = (1 << 20) - 1;

    Association(Vcm vcm, Device device, AssociationMode mode) {
        this(vcm, device, mode, 0);
    }

    Association(Vcm vcm, Device device, AssociationMode mode, int pasid) {
        this.vcm = vcm;
        this.device = device;
        this.mode = mode;
        this.pasid = pasid;
    }

    /** {@return the PASID the device reaches the VCM under; 0 for the default association} */
    public int pasid() {
        return pasid;
    }

    /** {@return the VCM} */
    public Vcm vcm() {
        return vcm;
    }

    /** {@return the device} */
    public Device device() {
        return device;
    }

    /** {@return which of the device's tables the association programs} */
    public AssociationMode mode() {
        return mode;
    }

    /**
     * Changes which of the device's tables the association programs (the RFC's {@code vcm_set_assoc_attr} with
     * {@code VCM_USE_LOW_BASE} / {@code VCM_USE_HIGH_BASE}); the boundary itself is the device's
     * {@link Device#setSplit split}.
     *
     * @param mode the new mode
     * @return this association
     * @throws VcmmBusyException        if it is active (the RFC's -EBUSY); nothing changed
     * @throws IllegalArgumentException if the VCM does not lie in the half {@code mode} programs; nothing changed
     * @throws IllegalStateException    if it was removed
     */
    public Association setMode(AssociationMode mode) {
        vcm.vcmm().setMode(this, java.util.Objects.requireNonNull(mode, "mode"));
        return this;
    }

    void mode(AssociationMode m) {
        mode = m;
    }

    /** {@return whether the VCM's table is programmed into the device} */
    public boolean isActive() {
        return active;
    }

    /** {@return whether {@link #deassoc()} was called} */
    public boolean isRemoved() {
        return removed;
    }

    /**
     * Programs the VCM's table into the device's slot(s).
     *
     * @return this association
     * @throws VcmmBusyException     if the device already has another active association in one of the slots
     * @throws IllegalStateException if the association was removed
     */
    public Association activate() {
        vcm.vcmm().activate(this);
        return this;
    }

    /**
     * Clears the device's slot(s); idempotent.
     *
     * @return this association
     * @throws IllegalStateException if the association was removed
     */
    public Association deactivate() {
        vcm.vcmm().deactivate(this);
        return this;
    }

    /**
     * Removes the association; the VCM drops its table of the device's format when no other association
     * needs it.
     *
     * @throws VcmmBusyException     if the association is active
     * @throws IllegalStateException if already removed
     */
    public void deassoc() {
        vcm.vcmm().deassoc(this);
    }

    /**
     * {@return the physical address of the root table the device walks (the RFC's {@code vcm_get_pgtbl_pa}): what
     *         activation programs into its TTBR, CR3 or satp; 0 for one-to-one devices}
     */
    public long root() {
        return vcm.root(device.format());
    }

    void setActive(boolean a) {
        active = a;
    }

    void markRemoved() {
        removed = true;
    }

    /** @return the uncommitted batch that deactivated this association, or {@code null} */
    InvalidationBatch pendingBatch() {
        return pendingBatch;
    }

    void pendingBatch(InvalidationBatch b) {
        pendingBatch = b;
    }

    int[] slots() {
        if (pasid != 0) {
            return new int[0]; // a PASID association is programmed in the device's PASID table, not in a slot
        }
        return switch (mode) {
            case WHOLE -> new int[] {Device.LOW, Device.HIGH};
            case USE_LOW -> new int[] {Device.LOW};
            case USE_HIGH -> new int[] {Device.HIGH};
        };
    }

    @Override
    public String toString() {
        return "Association{" + vcm.name() + " <-> " + device.name() + (pasid != 0 ? ", pasid " + pasid : ", " + mode) + (active ? ", active" : "") + (removed ? ", removed" : "") + '}';
    }
}
