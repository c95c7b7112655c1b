package dev.vcmm;

import dev.vcmm.pagetable.DirtyBits;
import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;

import java.util.Collection;

/**
 * Dirty tracking of one VCM, for live migration: which pages its devices wrote since the last read, from the
 * hardware dirty state of its page tables' entries ({@link DirtyBits}: arm64 DBM/AP[2], stage 2 DBM/S2AP[1],
 * x86 D, RISC-V D under Svadu), as Linux iommufd's {@code IOMMU_HWPT_SET_DIRTY_TRACKING} and
 * {@code IOMMU_HWPT_GET_DIRTY_BITMAP} give a hypervisor.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #enable}, {@link #disable}, {@link #readAndClear} and
 * {@link #readNoClear} are serialised on this object; they take the VCM's lock shared, so they run alongside backs,
 * unbacks and DMA, and no table is built or closed under them. <b>No write is lost:</b> a device write that
 * completes (its {@code write} call returns) after {@code readAndClear} has read the page's entry is reported by this
 * call or by the next one. Why: the device's walker makes a clean entry dirty with a compare-and-set before it
 * writes; the read cleans an entry with a compare-and-set, then invalidates the range in the IOTLB of every device
 * of the VCM and waits for their bursts in flight ({@link Vcm}'s invalidation), so a burst that still wrote through
 * a translation taken from the entry before it was cleaned has finished before this call returns (and its page was
 * reported as dirty by it), and every later write walks and marks the entry again.
 *
 * <p>Semantics: {@link #enable} cleans every entry of the VCM (as iommufd clears the dirty state when tracking
 * starts), so the first read reports what devices wrote since. A page mapped while tracking is on is reported dirty
 * (its entries are written dirty: its content is new). The bitmap's page is the smallest leaf of the VCM's
 * formats; a dirty block or contiguous run is reported as all its pages. A block or run that sticks out of the
 * range read is reported (its pages in the range) but not cleaned, so the pages outside keep their state.
 * {@link #disable} stops the reads and leaves the entries as they are: the walkers keep updating them (the model's
 * hardware always updates the dirty state), so a clean page costs one extra walk at its next write, nothing else.
 * Reads race with backs and unbacks of the range in the obvious way: a page unbacked meanwhile may or may not be
 * reported.
 */
public final class DirtyTracking {

    private final Vcm vcm;
    private boolean enabled; // guarded by this

    DirtyTracking(Vcm vcm) {
        this.vcm = vcm;
    }

    /** {@return the VCM it tracks} */
    public Vcm vcm() {
        return vcm;
    }

    /** {@return whether tracking is enabled} */
    public synchronized boolean isEnabled() {
        return enabled;
    }

    /**
     * Starts tracking: cleans the dirty state of every entry of the VCM's page tables and invalidates the devices'
     * IOTLBs for the whole VCM.
     *
     * @throws IllegalStateException         if tracking is already enabled, the VCM is freed or the VCMM closed
     * @throws UnsupportedOperationException if the VCM is one-to-one (its devices walk no tables) or one of its
     *                                       tables' formats has no dirty bits (armv7-short); nothing changed
     */
    public synchronized void enable() {
        if (enabled) {
            throw new IllegalStateException("dirty tracking is already enabled on " + vcm);
        }
        checkTracked();
        vcm.withTables(tables -> {
            checkFormats(tables);
            long cleaned = 0;
            for (PageTable t : tables) {
                long leaf = smallestLeaf(t.format());
                long from = vcm.start() & -leaf;
                long to = (vcm.start() + vcm.length() - 1) | (leaf - 1); // inclusive, rounded out to the table's pages
                cleaned += t.readDirty(from, to - from + 1, true, (va, len) -> { });
            }
            if (cleaned != 0) {
                vcm.invalidate(vcm.start(), vcm.length());
            }
            return null;
        });
        enabled = true;
    }

    /**
     * Stops tracking. The entries stay as they are; the next {@link #enable} cleans them again.
     *
     * @throws IllegalStateException if tracking is not enabled
     */
    public synchronized void disable() {
        if (!enabled) {
            throw new IllegalStateException("dirty tracking is not enabled on " + vcm);
        }
        enabled = false;
    }

    /**
     * Returns the pages of {@code [address, address + length)} that are dirty and makes them clean, invalidating the
     * IOTLBs of the VCM's devices for the range and waiting for their bursts in flight, so that no write is lost
     * (see the class comment). iommufd's {@code GET_DIRTY_BITMAP}.
     *
     * @param address the first address, in the VCM, aligned to every format's smallest leaf
     * @param length  the bytes, a positive multiple of every format's smallest leaf, inside the VCM
     * @return the dirty pages of the range
     * @throws IllegalArgumentException      if the range is not inside the VCM or not aligned; nothing changed
     * @throws IllegalStateException         if tracking is not enabled, the VCM is freed or the VCMM closed
     * @throws UnsupportedOperationException if a table's format has no dirty bits; nothing changed
     */
    public synchronized DirtyBitmap readAndClear(long address, long length) {
        return read(address, length, true);
    }

    /**
     * Returns the pages of {@code [address, address + length)} that are dirty and changes nothing (iommufd's
     * {@code IOMMU_DIRTY_NO_CLEAR}).
     *
     * @param address the first address, in the VCM, aligned to every format's smallest leaf
     * @param length  the bytes, a positive multiple of every format's smallest leaf, inside the VCM
     * @return the dirty pages of the range
     * @throws IllegalArgumentException      if the range is not inside the VCM or not aligned
     * @throws IllegalStateException         if tracking is not enabled, the VCM is freed or the VCMM closed
     * @throws UnsupportedOperationException if a table's format has no dirty bits
     */
    public synchronized DirtyBitmap readNoClear(long address, long length) {
        return read(address, length, false);
    }

    private DirtyBitmap read(long address, long length, boolean clear) {
        vcm.checkUsable();
        if (!enabled) {
            throw new IllegalStateException("dirty tracking is not enabled on " + vcm + ": call dirtyTracking().enable() first");
        }
        if (!vcm.covers(address, length)) {
            throw new IllegalArgumentException(String.format("range address=0x%x length=0x%x is not inside %s", address,
                length, vcm));
        }
        return vcm.withTables(tables -> {
            checkFormats(tables);
            long page = tables.isEmpty() ? Vcm.GRANULE : Long.MAX_VALUE;
            long align = Vcm.GRANULE;
            for (PageTable t : tables) {
                long leaf = smallestLeaf(t.format());
                page = Math.min(page, leaf);
                align = Math.max(align, leaf);
            }
            if (((address | length) & (align - 1)) != 0) {
                throw new IllegalArgumentException(String.format("address=0x%x length=0x%x must be multiples of 0x%x, the"
                    + " largest of the smallest leaves of %s's formats", address, length, align, vcm));
            }
            DirtyBitmap bitmap = new DirtyBitmap(address, length, page);
            long cleaned = 0;
            for (PageTable t : tables) {
                cleaned += t.readDirty(address, length, clear, bitmap::mark);
            }
            if (cleaned != 0) {
                vcm.invalidate(address, length); // IOTLB entries that allow writes go, then the bursts that used them
            }
            return bitmap;
        });
    }

    private void checkTracked() {
        vcm.checkUsable();
        if (!vcm.walksTables()) {
            throw new UnsupportedOperationException(vcm + " is one-to-one: its devices walk no page tables, so nothing"
                + " records their writes");
        }
    }

    private void checkFormats(Collection<PageTable> tables) {
        for (PageTable t : tables) {
            if (DirtyBits.of(t.format()) == null) {
                throw new UnsupportedOperationException(t.format().name() + " (a device of " + vcm + ") has no hardware"
                    + " dirty state: dirty tracking needs arm64, x86-64 or RISC-V formats");
            }
        }
    }

    private static long smallestLeaf(PageTableFormat f) {
        long min = Long.MAX_VALUE;
        for (LeafSize l : f.leafSizes()) {
            min = Math.min(min, l.entrySpan());
        }
        return min;
    }

    @Override
    public synchronized String toString() {
        return "DirtyTracking{" + vcm.name() + (enabled ? ", enabled" : ", disabled") + '}';
    }
}
