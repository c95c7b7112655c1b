package dev.vcmm.pagetable;

import java.util.ArrayList;
import java.util.List;

/**
 * The codec shared by the RISC-V Sv39, Sv48 and Sv57 page-table formats ({@link RiscvSv39Format},
 * {@link RiscvSv48Format}, {@link RiscvSv57Format}): they differ only in the number of levels, hence in the virtual-address width
 * and the largest leaf; the PTE is the same 64-bit word.
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: The RISC-V Instruction Set Manual, Volume II: Privileged Architecture (20211203 and later),
 * 4.3.1 "Addressing and Memory Protection" (PTE attributes), 4.3.2 "Virtual Address Translation Process",
 * 4.4 "Sv39", 4.5 "Sv48", 4.6 "Sv57", and the "Svpbmt" chapter (page-based memory types, bits 62:61).
 *
 * <pre>
 * Sv39/Sv48/Sv57 page table entry (Figure "Sv39 page table entry"; Sv48 and Sv57 have the same layout)
 *  63  62 61 60      54 53                       10 9   8 7 6 5 4 3 2 1 0
 * +---+------+----------+---------------------------+-----+-+-+-+-+-+-+-+-+
 * | N | PBMT | reserved |  PPN = physical addr >> 12 | RSW |D|A|G|U|X|W|R|V|
 * +---+------+----------+---------------------------+-----+-+-+-+-+-+-+-+-+
 *   V valid; R/W/X: 000 pointer to the next level, otherwise a leaf; W=1 with R=0 is reserved
 *   U user; G global; A accessed; D dirty; RSW ignored (software)
 *   reserved [60:54]: must be 0, else page fault; N (Svnapot): must be 0 (NAPOT is not used here)
 *   PBMT (Svpbmt, leaves only): 0 PMA, 1 NC (non-cacheable idempotent), 2 IO (non-cacheable, non-idempotent,
 *   strongly ordered), 3 reserved
 *
 * Pointer (non-leaf) PTE as written: V=1, R=W=X=0, U=A=D=0 (reserved in non-leaf PTEs), G=0, PBMT=0, N=0
 * Leaf PTE as written: V=1, R/W/X from the attributes, U = user, A=1 and D=1 (no A/D page faults), G=0
 * </pre>
 *
 * <p>Decoding follows the translation process of 4.3.2: V=0, R=0 with W=1, any reserved bit or encoding
 * (bits 60:54, N without Svnapot or outside a 64 KiB NAPOT leaf, PBMT=3, U/A/D/PBMT in a pointer PTE) and a pointer at the last level are
 * page faults ({@link Descriptor.Invalid}); so is a leaf above the last level whose PPN is not aligned to its
 * superpage ("misaligned superpage", step 6). A/D are modelled as under Svade (no hardware update): a leaf
 * with A=0 faults on every access ({@link Descriptor.Invalid}) and one with D=0 faults on stores (decoded as
 * not writable).
 *
 * <p>Permissions: R/W/X map one to one, so execute-only (R=0 X=1) is expressible; write without read and a
 * leaf with no permission are not, and are refused. sstatus.MXR and SUM are not modelled: a user page is
 * treated as reachable from S-mode. Memory types via Svpbmt: {@link CachePolicy#WRITE_BACK} as PMA (the
 * platform's attributes for the region, cacheable main memory), {@link CachePolicy#NON_CACHEABLE} as NC,
 * {@link CachePolicy#DEVICE} as IO; {@link CachePolicy#WRITE_THROUGH} has no encoding and is refused.
 */
abstract sealed class RiscvSvFormat implements PageTableFormat, DirtyBits permits RiscvSv39Format, RiscvSv48Format, RiscvSv57Format {

    @Override
    public final boolean isDirty(long raw) {
        return (raw & (RISCV_PTE_W | RISCV_PTE_D)) == (RISCV_PTE_W | RISCV_PTE_D);
    }

    @Override
    public final boolean isWritableClean(long raw) {
        return (raw & (RISCV_PTE_W | RISCV_PTE_D)) == RISCV_PTE_W;
    }

    @Override
    public final long clean(long raw) {
        return isDirty(raw) ? raw & ~RISCV_PTE_D : raw;
    }

    @Override
    public final long markDirty(long raw) {
        return isWritableClean(raw) ? raw | RISCV_PTE_D : raw;
    }


    static final long RISCV_PTE_V = 1L;
    static final long RISCV_PTE_R = 1L << 1;
    static final long RISCV_PTE_W = 1L << 2;
    static final long RISCV_PTE_X = 1L << 3;
    static final long RISCV_PTE_U = 1L << 4;
    static final long RISCV_PTE_G = 1L << 5;
    static final long RISCV_PTE_A = 1L << 6;
    static final long RISCV_PTE_D = 1L << 7;
    static final long RISCV_PTE_RWX = RISCV_PTE_R | RISCV_PTE_W | RISCV_PTE_X;
    static final int RISCV_PTE_PPN_SHIFT = 10;
    static final long RISCV_PTE_PPN_MASK = 0x003F_FFFF_FFFF_FC00L;      // [53:10]
    static final long RISCV_PTE_RESERVED_MASK = 0x1FC0_0000_0000_0000L; // [60:54]
    static final int RISCV_PTE_PBMT_SHIFT = 61;
    static final long RISCV_PTE_PBMT_MASK = 3L << RISCV_PTE_PBMT_SHIFT;  // [62:61]
    static final long RISCV_PTE_N = 1L << 63;
    /** Svnapot: PPN[3:0] of a 64 KiB NAPOT PTE (the only size defined, "Svnapot" chapter, Table "Page-based NAPOT PTE encoding"). */
    static final long RISCV_NAPOT_64K_PPN = 0b1000;

    static final int PBMT_PMA = 0;
    static final int PBMT_NC = 1;
    static final int PBMT_IO = 2;

    private static final int PAGE_SHIFT = 12;

    private final String name;
    private final int levels;
    private final int vaBits;
    private final LeafSize[] leafByLevel;
    private final List<LeafSize> leaves;
    /** The Svnapot 64 KiB leaf (16 identical last-level PTEs), or null where the format does not use Svnapot. */
    private final LeafSize napot64k;

    RiscvSvFormat(String name, int levels) {
        this(name, levels, false);
    }

    /** @param napot whether the format writes and reads Svnapot 64 KiB pages (N=1, PPN[3:0] = 1000) */
    RiscvSvFormat(String name, int levels, boolean napot) {
        this.name = name;
        this.levels = levels;
        this.vaBits = PAGE_SHIFT + 9 * levels;
        this.leafByLevel = new LeafSize[levels];
        this.napot64k = napot ? new LeafSize(64L << 10, levels - 1, 16) : null;
        List<LeafSize> all = new ArrayList<>();
        for (int level = 0; level < levels; level++) {
            leafByLevel[level] = new LeafSize(1L << levelShift(level), level, 1);
            if (napot && level == levels - 1) {
                all.add(napot64k);
            }
            all.add(leafByLevel[level]);
        }
        this.leaves = List.copyOf(all);
    }

    @Override
    public final String name() {
        return name;
    }

    @Override
    public final int levels() {
        return levels;
    }

    @Override
    public final int vaBits() {
        return vaBits;
    }

    @Override
    public final int paBits() {
        return 56;
    }

    @Override
    public final int entryBytes() {
        return 8;
    }

    @Override
    public final int levelShift(int level) {
        return PAGE_SHIFT + 9 * (levels - 1 - level);
    }

    @Override
    public final int levelBits(int level) {
        return 9;
    }

    @Override
    public final List<LeafSize> leafSizes() {
        return leaves;
    }

    /** Bits 63:vaBits must all equal bit vaBits-1 (4.4: "must be equal to bit 38", 4.5: "bit 47"). */
    @Override
    public final boolean isValidVa(long va) {
        int unused = 64 - vaBits;
        return (va << unused) >> unused == va;
    }

    @Override
    public final void checkAttributes(Attributes a) {
        if (a.write() && !a.read()) {
            throw new UnsupportedAttributeException(name + " cannot express write without read (R=0 W=1 is reserved): " + a);
        }
        if (!a.read() && !a.execute()) {
            throw new UnsupportedAttributeException(name + " cannot express a leaf with no permission (R=W=X=0 is a pointer): " + a);
        }
        if (a.cache() == CachePolicy.WRITE_THROUGH) {
            throw new UnsupportedAttributeException(name + " cannot express write-through memory (Svpbmt has PMA, NC, IO): " + a);
        }
    }

    @Override
    public final long tableEntry(int level, long tablePa) {
        return toPpnField(tablePa) | RISCV_PTE_V;
    }

    @Override
    public final long leafEntry(LeafSize leaf, long leafPa, int i, Attributes a) {
        long entryPa = leafPa + i * leaf.entrySpan();
        long raw = toPpnField(entryPa) | RISCV_PTE_V | RISCV_PTE_A | RISCV_PTE_D;
        if (leaf.isRun()) { // Svnapot: all 16 PTEs alike, PPN[3:0] = 1000 names the 64 KiB size, N = 1
            raw = toPpnField(leafPa) | (RISCV_NAPOT_64K_PPN << RISCV_PTE_PPN_SHIFT) | RISCV_PTE_N | RISCV_PTE_V
                | RISCV_PTE_A | RISCV_PTE_D;
        }
        if (a.read()) {
            raw |= RISCV_PTE_R;
        }
        if (a.write()) {
            raw |= RISCV_PTE_W;
        }
        if (a.execute()) {
            raw |= RISCV_PTE_X;
        }
        if (a.user()) {
            raw |= RISCV_PTE_U;
        }
        long pbmt = switch (a.cache()) {
            case WRITE_BACK -> PBMT_PMA;
            case NON_CACHEABLE -> PBMT_NC;
            case DEVICE -> PBMT_IO;
            case WRITE_THROUGH -> throw new UnsupportedAttributeException(name + " cannot express write-through memory: " + a);
        };
        return raw | pbmt << RISCV_PTE_PBMT_SHIFT;
    }

    /** Bits a non-leaf PTE must have clear besides R, W and X (4.3.1; Svpbmt; Svnapot), as decode checks them. */
    private static final long RISCV_PTE_NONLEAF_ZERO = RISCV_PTE_RWX | RISCV_PTE_U | RISCV_PTE_A | RISCV_PTE_D
        | RISCV_PTE_PBMT_MASK | RISCV_PTE_N | RISCV_PTE_RESERVED_MASK;

    @Override
    public final boolean isTable(int level, long raw) {
        return level < levels() - 1 && (raw & (RISCV_PTE_V | RISCV_PTE_NONLEAF_ZERO)) == RISCV_PTE_V;
    }

    @Override
    public final long tableAddress(int level, long raw) {
        return ((raw & RISCV_PTE_PPN_MASK) >>> 10) << 12;
    }

    @Override
    public final boolean isRunEntry(int level, long raw) {
        return napot64k != null && (raw & (RISCV_PTE_N | RISCV_PTE_V)) == (RISCV_PTE_N | RISCV_PTE_V); // a pre-filter
    }

    @Override
    public final Descriptor decode(int level, long raw, long va) {
        if ((raw & RISCV_PTE_V) == 0) {
            return Descriptor.INVALID;
        }
        if ((raw & RISCV_PTE_R) == 0 && (raw & RISCV_PTE_W) != 0) {
            return new Descriptor.Invalid("reserved encoding R=0 W=1 at level " + level);
        }
        if ((raw & RISCV_PTE_RESERVED_MASK) != 0) {
            return new Descriptor.Invalid("reserved bits 60:54 set at level " + level);
        }
        if ((raw & RISCV_PTE_N) != 0 && (napot64k == null || level != levels - 1 || !isLeaf(raw)
            || ((raw >>> RISCV_PTE_PPN_SHIFT) & 0xF) != RISCV_NAPOT_64K_PPN)) {
            return new Descriptor.Invalid("N (Svnapot) set at level " + level + (napot64k == null
                ? "; NAPOT is not used by " + name : " in other than a last-level leaf with PPN[3:0] = 1000 (reserved)"));
        }
        int pbmt = (int) ((raw & RISCV_PTE_PBMT_MASK) >>> RISCV_PTE_PBMT_SHIFT);
        if (pbmt == 3) {
            return new Descriptor.Invalid("reserved PBMT encoding 3 at level " + level);
        }
        long pa = fromPpnField(raw);
        if (!isLeaf(raw)) {
            if (level == levels - 1) {
                return new Descriptor.Invalid("pointer PTE at the last level " + level);
            }
            if ((raw & (RISCV_PTE_U | RISCV_PTE_A | RISCV_PTE_D | RISCV_PTE_PBMT_MASK)) != 0) {
                return new Descriptor.Invalid("reserved U/A/D/PBMT set in a pointer PTE at level " + level);
            }
            return new Descriptor.Table(pa);
        }
        boolean napot = (raw & RISCV_PTE_N) != 0; // checked above: a 64 KiB NAPOT leaf
        LeafSize leaf = napot ? napot64k : leafByLevel[level];
        long span = leaf.size();
        if (napot) {
            pa &= -span; // PPN[3:0] = 1000 is the size encoding; the address bits 15:12 come from the VA
        } else if ((pa & (span - 1)) != 0) {
            return new Descriptor.Invalid("misaligned superpage: PPN 0x" + Long.toHexString(pa >>> PAGE_SHIFT)
                + " of a " + leaf + " leaf");
        }
        if ((raw & RISCV_PTE_A) == 0) {
            return new Descriptor.Invalid("A clear in a leaf at level " + level + " (page fault, Svade)");
        }
        boolean read = (raw & RISCV_PTE_R) != 0;
        boolean write = (raw & RISCV_PTE_W) != 0 && (raw & RISCV_PTE_D) != 0; // D=0: stores fault (Svade)
        boolean execute = (raw & RISCV_PTE_X) != 0;
        boolean user = (raw & RISCV_PTE_U) != 0;
        CachePolicy cache = switch (pbmt) {
            case PBMT_PMA -> CachePolicy.WRITE_BACK;
            case PBMT_NC -> CachePolicy.NON_CACHEABLE;
            default -> CachePolicy.DEVICE;
        };
        return new Descriptor.Leaf(pa | (va & (span - 1)), leaf, new Attributes(read, write, execute, user, cache));
    }

    /** {@return whether {@code raw} (valid) is a leaf: any of R, W, X set} */
    static boolean isLeaf(long raw) {
        return (raw & RISCV_PTE_RWX) != 0;
    }

    /** {@return the PPN field, bits 53:10, for the physical address {@code pa}} */
    static long toPpnField(long pa) {
        return (pa >>> PAGE_SHIFT << RISCV_PTE_PPN_SHIFT) & RISCV_PTE_PPN_MASK;
    }

    /** {@return the physical address the PPN field of {@code raw} names} */
    static long fromPpnField(long raw) {
        return (raw & RISCV_PTE_PPN_MASK) >>> RISCV_PTE_PPN_SHIFT << PAGE_SHIFT;
    }

    @Override
    public final String toString() {
        return name;
    }
}
