package dev.vcmm.pagetable;

/**
 * The hardware-managed dirty state of a format's leaf entries: what a walker with hardware dirty-bit update
 * writes on the first write through a clean entry, and what software reads and clears to learn which pages
 * devices wrote (Linux iommufd's {@code read_and_clear_dirty}). A format that has such a bit implements this
 * interface next to {@link PageTableFormat}; one that has none (armv7-short) does not.
 *
 * <p><b>Thread-safety:</b> implementations are immutable, stateless codecs.
 *
 * <p>Every writable leaf is in one of two states. <em>Dirty</em> is what the format's
 * {@link PageTableFormat#leafEntry} writes for a writable mapping (so a new mapping reads as dirty: its content
 * is new to anyone tracking); {@link #clean} makes it <em>writable-clean</em>, and the walker's first write
 * through it turns it back to dirty with one compare-and-set ({@link #markDirty}). Read-only leaves are neither.
 *
 * <pre>
 * format          dirty (as mapped)          writable-clean                hardware update on a write
 * arm64 stage 1   AP[2]=0 (bit 7)            DBM=1 (bit 51), AP[2]=1       clear AP[2]    (FEAT_HAFDBS)
 * arm64 stage 2   S2AP[1]=1 (bit 7)          DBM=1 (bit 51), S2AP[1]=0     set S2AP[1]    (FEAT_HAFDBS)
 * x86-64          R/W=1, D=1 (bit 6)         R/W=1, D=0                    set D          (SDM 4.8)
 * RISC-V Sv*      W=1, D=1 (bit 7)           W=1, D=0                      set D          (Svadu)
 * </pre>
 *
 * <p>Arm: Arm ARM D8 "Hardware management of the dirty state" (a writable-clean entry is read-only with DBM
 * set, and the hardware clears AP[2] / sets S2AP[1] atomically on the first write). x86: Intel SDM Vol. 3A
 * 4.8 "Accessed and Dirty Flags" (and VT-d 3.6.2, first-level D). RISC-V: privileged spec, "Svadu" extension.
 * A contiguous run (Arm's contiguous hint, Svnapot) may have its dirty state in any of its entries: software
 * reads the run as dirty if any entry is (Arm ARM D8, "Use of the Contiguous bit with hardware dirty state").
 */
public interface DirtyBits {

    /**
     * {@return whether the leaf entry {@code raw} (a valid leaf) is writable and dirty}
     *
     * @param raw a leaf entry the format decodes as a leaf
     */
    boolean isDirty(long raw);

    /**
     * {@return whether the leaf entry {@code raw} is writable-clean: a write through it makes it dirty}
     *
     * @param raw a leaf entry the format decodes as a leaf
     */
    boolean isWritableClean(long raw);

    /**
     * {@return {@code raw} made writable-clean; a leaf that is not dirty is returned unchanged}
     *
     * @param raw a leaf entry
     */
    long clean(long raw);

    /**
     * {@return {@code raw} made dirty, the walker's update; a leaf that is not writable-clean is returned unchanged}
     *
     * @param raw a leaf entry
     */
    long markDirty(long raw);

    /**
     * {@return the format's dirty bits, or {@code null} if it has none}
     *
     * @param format a page-table format
     */
    static DirtyBits of(PageTableFormat format) {
        return format instanceof DirtyBits d ? d : null;
    }

    /**
     * {@return {@code a}, the decoded attributes of {@code raw}, with write restored if {@code raw} is
     * writable-clean: the permission the mapping was made with, which a split must keep}
     *
     * @param format the format of {@code raw}
     * @param raw    a leaf entry
     * @param a      its decoded attributes
     */
    static Attributes mappedAttributes(PageTableFormat format, long raw, Attributes a) {
        DirtyBits d = of(format);
        if (d == null || a.write() || !d.isWritableClean(raw)) {
            return a;
        }
        return new Attributes(a.read(), true, a.execute(), a.user(), a.cache());
    }
}
