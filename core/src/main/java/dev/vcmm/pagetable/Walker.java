package dev.vcmm.pagetable;

import dev.vcmm.spi.PhysicalMemory;

/**
 * The hardware walker: translates a virtual address by reading descriptors from physical memory,
 * starting at a root table address, exactly as an MMU or SMMU would. It consults nothing but the
 * memory, the root and the format's decoder (never a mapper's bookkeeping), so it is what every test
 * believes. Permissions are the leaf's, limited by what the table descriptors above it allow
 * ({@link Descriptor.Table#allowsWrite()} and its siblings), as x86 ANDs R/W and U/S along the walk and Arm
 * applies APTable, UXNTable and PXNTable. Faults carry the class the manuals name: translation, access flag
 * (an Arm descriptor with AF=0), permission, address size ({@link FaultReason}), with the level.
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
     * @param format the format of the tables
     * @param memory the physical memory they live in
     * @param root   the physical address of the root table
     * @param va     the input address to translate
     * @return the translation, or the fault the hardware would raise
     */
    public static WalkResult translate(PageTableFormat format, PhysicalMemory memory, long root, long va) {
        return walk(format, memory, root, va, null, false, false);
    }

    /**
     * Translates {@code va} for an access of kind {@code access} from user ({@code fromUser}) or
     * privileged level, raising a {@link FaultReason#PERMISSION} fault where the leaf forbids it.
     *
     * @param format   the format of the tables
     * @param memory   the physical memory they live in
     * @param root     the physical address of the root table
     * @param va       the input address to translate
     * @param access   the access to check
     * @param fromUser whether the access comes from the unprivileged level
     * @return the translation, or the fault the hardware would raise
     */
    public static WalkResult translate(PageTableFormat format, PhysicalMemory memory, long root, long va,
                                       Access access, boolean fromUser) {
        return walk(format, memory, root, va, java.util.Objects.requireNonNull(access, "access"), fromUser, false);
    }

    /**
     * Translates {@code va} as {@link #translate(PageTableFormat, PhysicalMemory, long, long, Access, boolean)} does,
     * as a walker with hardware dirty-state update (Arm FEAT_HAFDBS with DBM, x86's D flag, RISC-V Svadu): a
     * {@link Access#WRITE WRITE} that reaches a {@linkplain DirtyBits#isWritableClean writable-clean} leaf, and that
     * the tables above allow, makes the leaf dirty with one compare-and-set of the entry and then translates through
     * it (a lost compare-and-set reads the entry again). Any other access through a writable-clean leaf gets its
     * translation without write permission, so a cache of the result (an IOTLB entry) cannot let a later write past
     * the update. Formats without {@link DirtyBits} walk exactly as {@code translate} does. This is the walk devices
     * make ({@link PageTable#walk}).
     *
     * @param format   the format of the tables
     * @param memory   the physical memory they live in
     * @param root     the physical address of the root table
     * @param va       the input address to translate
     * @param access   the access to check, or {@code null} for none (no update is then made)
     * @param fromUser whether the access comes from the unprivileged level
     * @return the translation, or the fault the hardware would raise
     */
    public static WalkResult translateUpdatingDirty(PageTableFormat format, PhysicalMemory memory, long root, long va,
                                                    Access access, boolean fromUser) {
        return walk(format, memory, root, va, access, fromUser, true);
    }

    private static WalkResult walk(PageTableFormat format, PhysicalMemory memory, long root, long va,
                                   Access access, boolean fromUser, boolean updateDirty) {
        if (!format.isValidVa(va)) {
            return new WalkResult.PageFault(va, -1, FaultReason.ADDRESS_SIZE,
                "va outside the " + format.vaBits() + "-bit input space of " + format.name());
        }
        final int entryBytes = format.entryBytes();
        final DirtyBits dirtyBits = updateDirty && access != null ? DirtyBits.of(format) : null;
        long table = root;
        boolean allowsWrite = true; // hierarchical limits: the AND over the table descriptors walked
        boolean allowsUser = true;
        boolean allowsUserExecute = true;
        boolean allowsPrivilegedExecute = true;
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
                    return new WalkResult.PageFault(va, level, invalid.reason(),
                        invalid.why() + String.format(" (entry 0x%x at 0x%x)", raw, address));
                }
                case Descriptor.Table t -> {
                    table = t.tablePa();
                    allowsWrite &= t.allowsWrite();
                    allowsUser &= t.allowsUser();
                    allowsUserExecute &= t.allowsUserExecute();
                    allowsPrivilegedExecute &= t.allowsPrivilegedExecute();
                }
                case Descriptor.Leaf leaf -> {
                    Attributes a = leaf.attributes();
                    if (dirtyBits != null && dirtyBits.isWritableClean(raw)) {
                        if (access == Access.WRITE && allowsWrite && (!fromUser || (allowsUser && a.user()))) {
                            // the hardware's update: one compare-and-set of the entry (Arm ARM D8: atomic with
                            // respect to other updates of the descriptor); lost to a change: read the entry again
                            long dirty = dirtyBits.markDirty(raw);
                            if (!memory.casLong(address, raw, dirty)) {
                                level--;
                                continue;
                            }
                            if (!(format.decode(level, dirty, va) instanceof Descriptor.Leaf updated)) {
                                throw new IllegalStateException(format.name() + ": dirty update made 0x"
                                    + Long.toHexString(dirty) + " of a leaf");
                            }
                            leaf = updated;
                            a = updated.attributes();
                        } else if (a.write()) {
                            a = new Attributes(a.read(), false, a.execute(), a.user(), a.cache()); // x86: D=0 reads as R/W=1
                        }
                    }
                    if (!(allowsWrite && allowsUser && allowsUserExecute && allowsPrivilegedExecute)) {
                        a = limit(a, allowsWrite, allowsUser, allowsUserExecute, allowsPrivilegedExecute);
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

    /**
     * The leaf's attributes as the table descriptors above it limit them. A leaf's {@code execute} is for the
     * privilege of the mapping (a user mapping's execute is EL0's, UXN; a privileged one's is PXN), so the
     * execute limit is the one of that privilege (Arm UXNTable for a user leaf, PXNTable for a privileged one;
     * x86 XD limits both). {@link Attributes} judges privileged access to a user leaf by the same execute bit,
     * so a user leaf that loses user access (Arm APTable=x1, x86 U/S=0 above) keeps its execute as it was.
     */
    static Attributes limit(Attributes a, boolean allowsWrite, boolean allowsUser, boolean allowsUserExecute,
                            boolean allowsPrivilegedExecute) {
        boolean execute = a.execute() && (a.user() ? allowsUserExecute : allowsPrivilegedExecute);
        return new Attributes(a.read(), a.write() && allowsWrite, execute, a.user() && allowsUser, a.cache());
    }

    /** What {@link #forEachLeaf} reports: every leaf entry, and every entry that would fault though it is not zero. */
    public interface LeafVisitor {

        /**
         * One entry of a leaf, in table-index order (the lower half before the upper).
         *
         * @param va         the first input address the entry maps (sign-extended or upper-range as the format is)
         * @param pa         the output address of that byte
         * @param span       the bytes this entry maps
         * @param leaf       the leaf it belongs to (a run's whole size for contiguous runs)
         * @param attributes its permissions as the table descriptors above limit them
         */
        void leaf(long va, long pa, long span, LeafSize leaf, Attributes attributes);

        /**
         * A non-zero entry that a walk through it would fault on (a reserved encoding, AF=0, a table outside
         * the memory). Zero entries are not reported.
         *
         * @param va     the first input address the entry spans
         * @param span   the bytes it spans
         * @param level  the level it was read at
         * @param reason the fault a walk through it raises
         * @param detail what is wrong with it, for a reader
         */
        default void fault(long va, long span, int level, FaultReason reason, String detail) {
        }
    }

    /**
     * Visits every mapping the tables at {@code root} hold, reading only the memory, as {@link #translate}
     * would find them one address at a time: the hardware view of a table someone else may have built.
     * Hierarchical limits are applied as in {@link #translate}.
     *
     * @param format  the format of the tables
     * @param memory  the physical memory they live in
     * @param root    the physical address of the root table
     * @param visitor receives every leaf entry and every non-zero entry that would fault
     */
    public static void forEachLeaf(PageTableFormat format, PhysicalMemory memory, long root, LeafVisitor visitor) {
        visit(format, memory, root, 0, 0, true, true, true, true, java.util.Objects.requireNonNull(visitor, "visitor"));
    }

    private static void visit(PageTableFormat format, PhysicalMemory memory, long table, int level, long vaPrefix,
                              boolean allowsWrite, boolean allowsUser, boolean allowsUserExecute,
                              boolean allowsPrivilegedExecute, LeafVisitor visitor) {
        int entryBytes = format.entryBytes();
        int n = 1 << format.levelBits(level);
        int shift = format.levelShift(level);
        long span = 1L << shift;
        for (int i = 0; i < n; i++) {
            long va = inputAddress(format, vaPrefix | (long) i << shift);
            long address = table + (long) i * entryBytes;
            if (address < memory.base() || address > memory.base() + memory.size() - entryBytes) {
                visitor.fault(va, span * (n - i), level, FaultReason.ADDRESS_SIZE,
                    String.format("table entry at 0x%x is outside physical memory", address));
                return;
            }
            long raw = entryBytes == 8 ? memory.laLong(address) : Integer.toUnsignedLong(memory.laInt(address));
            if (raw == 0) {
                continue;
            }
            switch (format.decode(level, raw, va)) {
                case Descriptor.Invalid invalid -> {
                    if (!invalid.equals(Descriptor.INVALID)) {
                        visitor.fault(va, span, level, invalid.reason(), invalid.why() + String.format(" (entry 0x%x)", raw));
                    }
                }
                case Descriptor.Table t -> {
                    if (level + 1 < format.levels()) {
                        visit(format, memory, t.tablePa(), level + 1, vaPrefix | (long) i << shift,
                            allowsWrite && t.allowsWrite(), allowsUser && t.allowsUser(),
                            allowsUserExecute && t.allowsUserExecute(), allowsPrivilegedExecute && t.allowsPrivilegedExecute(),
                            visitor);
                    }
                }
                case Descriptor.Leaf leaf -> visitor.leaf(va, leaf.pa(), span, leaf.leaf(),
                    limit(leaf.attributes(), allowsWrite, allowsUser, allowsUserExecute, allowsPrivilegedExecute));
            }
        }
    }

    /** {@return {@code v} (in {@code [0, 2^vaBits)}) as the format spells it: as is, or with bits 63:vaBits set} */
    private static long inputAddress(PageTableFormat format, long v) {
        if (format.isValidVa(v)) {
            return v;
        }
        return format.vaBits() >= 64 ? v : v | -(1L << format.vaBits());
    }
}
