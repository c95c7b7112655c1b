package dev.vcmm;

/**
 * The link between a {@link Vcm} and a {@link Device} (the original VCMM's "associated VCM"), with the slot
 * mode it uses. Inactive when made; {@link #activate()} programs the VCM's table root for the device's
 * format into the device, {@link #deactivate()} clears it; {@link #deassoc()} removes the link and is
 * refused while active.
 *
 * <p><b>Thread-safety:</b> thread-safe: every state change goes through the {@link Vcmm}'s graph lock.
 */
public final class Association {

    private final Vcm vcm;
    private final Device device;
    /** Changed by {@link #setMode} under the graph lock while inactive. */
    private volatile AssociationMode mode;
    private volatile boolean active;
    private volatile boolean removed;

    Association(Vcm vcm, Device device, AssociationMode mode) {
        this.vcm = vcm;
        this.device = device;
        this.mode = mode;
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

    int[] slots() {
        return switch (mode) {
            case WHOLE -> new int[] {Device.LOW, Device.HIGH};
            case USE_LOW -> new int[] {Device.LOW};
            case USE_HIGH -> new int[] {Device.HIGH};
        };
    }

    @Override
    public String toString() {
        return "Association{" + vcm.name() + " <-> " + device.name() + ", " + mode + (active ? ", active" : "") + (removed ? ", removed" : "") + '}';
    }
}
