package dev.vcmm.pagetable;

import dev.vcmm.spi.PhysicalMemory;

/**
 * The hardware walker: translates a virtual address by reading descriptors from physical memory,
 * starting at a root table address, exactly as an MMU or SMMU would. It consults nothing but the
 * memory, the root and the format's decoder (never a mapper's bookkeeping), so it is what every test
 * believes. Permissions are the leaf's, limited by what the table descriptors above it allow
 * ({@link Descriptor.Table#allowsWrite()} and its siblings), as x86 ANDs R/W and U/S along the walk.
 *
 * <p><b>Thread-safety:</b> stateless and thread-safe. Each descriptor is read once with acquire
 * semantics, like a hardware walk's single-copy-atomic reads; a walk racing with a map or unmap of the
 * same address sees either the old or the new entry at each level.
 */
public final class Walker {

    /** Test-only: see {@link PausePoint}. Null outside tests. */
    static PausePoint pausePoint;

    private Walker() {
    }

    /**
     * Translates {@code va} with no permission check.
     *
     * @return the translation, or the fault the hardware would raise
     */
    public static WalkResult translate(PageTableFormat format, PhysicalMemory memory, long root, long va) {
        return walk(format, memory, root, va, null, false);
    }

    /**
     * Translates {@code va} for an access of kind {@code access} from user ({@code fromUser}) or
     * privileged level, raising a {@link FaultReason#PERMISSION} fault where the leaf forbids it.
     *
     * @return the translation, or the fault the hardware would raise
     */
    public static WalkResult translate(PageTableFormat format, PhysicalMemory memory, long root, long va,
                                       Access access, boolean fromUser) {
        return walk(format, memory, root, va, java.util.Objects.requireNonNull(access, "access"), fromUser);
    }

    private static WalkResult walk(PageTableFormat format, PhysicalMemory memory, long root, long va,
                                   Access access, boolean fromUser) {
        if (!format.isValidVa(va)) {
            return new WalkResult.PageFault(va, -1, FaultReason.ADDRESS_SIZE,
                "va outside the " + format.vaBits() + "-bit input space of " + format.name());
        }
        final int entryBytes = format.entryBytes();
        long table = root;
        boolean allowsWrite = true; // hierarchical limits: the AND over the table descriptors walked
        boolean allowsUser = true;
        boolean allowsExecute = true;
        for (int level = 0; level < format.levels(); level++) {
            long index = (va >>> format.levelShift(level)) & ((1L << format.levelBits(level)) - 1);
            long address = table + index * entryBytes;
            if (address < memory.base() || address > memory.base() + memory.size() - entryBytes) {
                return new WalkResult.PageFault(va, level, FaultReason.ADDRESS_SIZE,
                    String.format("table entry at 0x%x is outside physical memory", address));
            }
            long raw = entryBytes == 8 ? memory.laLong(address) : Integer.toUnsignedLong(memory.laInt(address));
            PausePoint pause = pausePoint;
            if (pause != null) {
                pause.reached(PausePoint.WALK_READ, level, va);
            }
            Descriptor d = format.decode(level, raw, va);
            switch (d) {
                case Descriptor.Invalid invalid -> {
                    return new WalkResult.PageFault(va, level, FaultReason.TRANSLATION,
                        invalid.why() + String.format(" (entry 0x%x at 0x%x)", raw, address));
                }
                case Descriptor.Table t -> {
                    table = t.tablePa();
                    allowsWrite &= t.allowsWrite();
                    allowsUser &= t.allowsUser();
                    allowsExecute &= t.allowsExecute();
                }
                case Descriptor.Leaf leaf -> {
                    Attributes a = leaf.attributes();
                    if (!(allowsWrite && allowsUser && allowsExecute)) {
                        a = new Attributes(a.read(), a.write() && allowsWrite, a.execute() && allowsExecute,
                            a.user() && allowsUser, a.cache());
                    }
                    if (access != null && !a.allows(access, fromUser)) {
                        return new WalkResult.PageFault(va, level, FaultReason.PERMISSION,
                            access + (fromUser ? " from user" : " from privileged") + " not allowed by " + a);
                    }
                    return new WalkResult.Translation(va, leaf.pa(), leaf.leaf().size(), level, a);
                }
            }
        }
        return new WalkResult.PageFault(va, format.levels() - 1, FaultReason.TRANSLATION, "table descriptor at the last level");
    }
}
