package dev.vcmm.pagetable;

import java.util.List;

/**
 * {@code x86-64}: Intel 64 4-level paging (CR4.PAE=1, IA32_EFER.LME=1, CR4.LA57=0) with IA32_EFER.NXE=1,
 * 48-bit canonical linear addresses, MAXPHYADDR 52; 4 KiB pages, 2 MiB pages (PDE.PS=1) and 1 GiB pages
 * (PDPTE.PS=1). The format of the CPU and of the first-level tables of Intel VT-d scalable mode. Its one
 * subclass, {@link X86_64FiveLevelFormat}, is the same codec with a PML5 table on top (CR4.LA57=1); levels
 * below count from the root, so the leaf levels there are one higher.
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: Intel 64 and IA-32 Architectures Software Developer's Manual, Vol. 3A, 4.5 "4-Level Paging and
 * 5-Level Paging" (Tables 4-15 PML4E, 4-16 PDPTE mapping a 1GB page, 4-17 PDPTE referencing a page directory,
 * 4-18 PDE mapping a 2MB page, 4-19 PDE referencing a page table, 4-20 PTE mapping a 4KB page), 4.6 "Access
 * Rights" and 4.9 "Paging and Memory Typing" (PAT index = PAT:PCD:PWT, 4.9.2 and Vol. 3A 13.12.3).
 *
 * <pre>
 * Levels: PML4 (level 0, VA[47:39]), PDPT (level 1, VA[38:30]), PD (level 2, VA[29:21]), PT (level 3, VA[20:12])
 *
 * Entry referencing a table: PML4E (Table 4-15), PDPTE (4-17), PDE (4-19)
 *  63  62       52 51                             12 11   8  7   6  5   4   3   2   1  0
 * +--+-----------+----------------------------------+------+---+--+--+---+---+---+---+--+
 * |XD|  ignored  | next-level table address [51:12] | ign. |PS0|ig|A |PCD|PWT|U/S|R/W|P |
 * +--+-----------+----------------------------------+------+---+--+--+---+---+---+---+--+
 *   written as P=1 R/W=1 U/S=1 A=0 PWT=PCD=0 XD=0: permissive, so the leaf alone decides (4.6: the
 *   effective rights are the AND of R/W and U/S, and the OR of XD, over every entry of the walk)
 *   PS (bit 7) must be 0 in a PML4E (reserved, Table 4-15); PS=1 in a PDPTE/PDE makes it a leaf
 *
 * PDPTE mapping a 1GB page (Table 4-16)
 *  63  62  59 58   52 51                 30 29      13 12  11   9  8  7  6  5   4   3   2   1  0
 * +--+-------+-------+----------------------+----------+---+------+--+--+--+--+---+---+---+---+--+
 * |XD|  PK   |ignored| page address [51:30] | reserved |PAT| ign. |G |1 |D |A |PCD|PWT|U/S|R/W|P |
 * +--+-------+-------+----------------------+----------+---+------+--+--+--+--+---+---+---+---+--+
 *
 * PDE mapping a 2MB page (Table 4-18)
 *  63  62  59 58   52 51                       21 20  13 12  11   9  8  7  6  5   4   3   2   1  0
 * +--+-------+-------+----------------------------+------+---+------+--+--+--+--+---+---+---+---+--+
 * |XD|  PK   |ignored|   page address [51:21]     | res. |PAT| ign. |G |1 |D |A |PCD|PWT|U/S|R/W|P |
 * +--+-------+-------+----------------------------+------+---+------+--+--+--+--+---+---+---+---+--+
 *
 * PTE mapping a 4KB page (Table 4-20)
 *  63  62  59 58   52 51                                 12 11   9  8  7   6  5   4   3   2   1  0
 * +--+-------+-------+--------------------------------------+------+--+---+--+--+---+---+---+---+--+
 * |XD|  PK   |ignored|        page address [51:12]          | ign. |G |PAT|D |A |PCD|PWT|U/S|R/W|P |
 * +--+-------+-------+--------------------------------------+------+--+---+--+--+---+---+---+---+--+
 *
 *   P=1; R/W = write; U/S = user; XD = !execute; A=1 and D=1 (so the CPU never writes them back); G=0;
 *   PK (protection key, CR4.PKE/PKS) written 0 and ignored; PAT written 0.
 *   With MAXPHYADDR = 52 no address bit is reserved; in large pages bits 29:13 (1GB) or 20:13 (2MB) are.
 * </pre>
 *
 * <p>Permissions (4.6): every present page is readable, so a mapping without read, or write or execute
 * without read, cannot be expressed and is refused. A user page is also accessible to supervisor code
 * (SMEP/SMAP are not modelled).
 *
 * <p>Memory type (4.9.2): the PAT index is {@code PAT:PCD:PWT}; with the power-on value of IA32_PAT,
 * {@code 0x0007040600070406} ({@link #PAT_MSR_DEFAULT}: PA0 WB, PA1 WT, PA2 UC-, PA3 UC, PA4-7 repeating PA0-3), this format encodes
 * {@link CachePolicy#WRITE_BACK} as index 0 (PWT=0 PCD=0), {@link CachePolicy#WRITE_THROUGH} as 1 (PWT=1),
 * {@link CachePolicy#NON_CACHEABLE} as 2, UC- (PCD=1: uncached, but an MTRR of type WC may still make it
 * write-combining, the nearest to Arm's Normal Non-cacheable) and {@link CachePolicy#DEVICE} as 3, UC (PCD=1
 * PWT=1: strong uncacheable, no speculation, no combining). x86 has no memory type distinct for devices; UC
 * is what it uses for MMIO. Decoding ignores the PAT bit, since PA4-7 equal PA0-3 in the default IA32_PAT.
 *
 * <p>Hierarchical rights (4.6): a table entry decodes to a {@link Descriptor.Table} carrying its R/W, U/S and
 * XD, and the {@link Walker} ANDs them into the leaf's permissions, as the CPU does. The tables this format
 * writes are permissive, so the leaf alone decides. Not modelled: CR0.WP=0, SMEP, SMAP, protection keys.
 */
public sealed class X86_64Format implements PageTableFormat, DirtyBits permits X86_64FiveLevelFormat {

    @Override
    public boolean isDirty(long raw) {
        return (raw & (X86_PTE_RW | X86_PTE_D)) == (X86_PTE_RW | X86_PTE_D);
    }

    @Override
    public boolean isWritableClean(long raw) {
        return (raw & (X86_PTE_RW | X86_PTE_D)) == X86_PTE_RW;
    }

    @Override
    public long clean(long raw) {
        return isDirty(raw) ? raw & ~X86_PTE_D : raw;
    }

    @Override
    public long markDirty(long raw) {
        return isWritableClean(raw) ? raw | X86_PTE_D : raw;
    }


    /** The single instance. */
    public static final X86_64Format INSTANCE = new X86_64Format();

    /** The power-on (reset) value of IA32_PAT that the memory-type encoding assumes (SDM Vol. 3A 13.12.4). */
    public static final long PAT_MSR_DEFAULT = 0x0007_0406_0007_0406L;

    static final long X86_PTE_P = 1L;                  // present
    static final long X86_PTE_RW = 1L << 1;            // read/write
    static final long X86_PTE_US = 1L << 2;            // user/supervisor
    static final long X86_PTE_PWT = 1L << 3;           // page-level write-through (PAT index bit 0)
    static final long X86_PTE_PCD = 1L << 4;           // page-level cache disable (PAT index bit 1)
    static final long X86_PTE_A = 1L << 5;             // accessed
    static final long X86_PTE_D = 1L << 6;             // dirty (leaves only)
    static final long X86_PTE_PS = 1L << 7;            // page size, PDPTE and PDE
    static final long X86_PTE_PAT_4K = 1L << 7;        // PAT index bit 2 in a PTE
    static final long X86_PTE_G = 1L << 8;             // global
    static final long X86_PTE_PAT_LARGE = 1L << 12;    // PAT index bit 2 in a 1GB/2MB page
    static final long X86_PTE_XD = 1L << 63;           // execute-disable (IA32_EFER.NXE=1)
    static final long X86_PTE_ADDR_MASK = 0x000F_FFFF_FFFF_F000L; // [51:12], MAXPHYADDR 52
    static final int X86_PTE_CACHE_SHIFT = 3;
    static final long X86_PTE_CACHE_MASK = X86_PTE_PWT | X86_PTE_PCD;

    static final int PAT_IDX_WB = 0;
    static final int PAT_IDX_WT = 1;
    static final int PAT_IDX_UC_MINUS = 2;
    static final int PAT_IDX_UC = 3;

    private final String name;
    private final int levels;
    private final LeafSize page1g;
    private final LeafSize page2m;
    private final LeafSize page4k;
    private final List<LeafSize> leaves;

    private X86_64Format() {
        this("x86-64", 4);
    }

    /** A paging mode of {@code levels} levels (4, or 5 with CR4.LA57); the 1 GiB leaf is at level {@code levels - 3}. */
    X86_64Format(String name, int levels) {
        this.name = name;
        this.levels = levels;
        this.page1g = new LeafSize(1L << 30, levels - 3, 1);
        this.page2m = new LeafSize(2L << 20, levels - 2, 1);
        this.page4k = new LeafSize(4L << 10, levels - 1, 1);
        this.leaves = List.of(page1g, page2m, page4k);
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
        return 12 + 9 * levels;
    }

    @Override
    public int paBits() {
        return 52;
    }

    @Override
    public int entryBytes() {
        return 8;
    }

    @Override
    public int levelShift(int level) {
        return 12 + 9 * (levels - 1 - level);
    }

    @Override
    public int levelBits(int level) {
        return 9;
    }

    @Override
    public List<LeafSize> leafSizes() {
        return leaves;
    }

    /**
     * Canonical (SDM Vol. 1, 3.3.7.1; Vol. 3A 4.5): bits 63:vaBits-1 all equal, for 4-level paging
     * {@code [0, 2^47)} and {@code [2^64 - 2^47, 2^64)}, for 5-level {@code 2^56} in place of {@code 2^47}.
     */
    @Override
    public boolean isValidVa(long va) {
        int unused = 64 - vaBits();
        return (va << unused) >> unused == va;
    }

    @Override
    public void checkAttributes(Attributes a) {
        if (!a.read()) {
            throw new UnsupportedAttributeException(name() + " cannot express a mapping without read permission"
                + " (every present page is readable): " + a);
        }
    }

    @Override
    public long tableEntry(int level, long tablePa) {
        return (tablePa & X86_PTE_ADDR_MASK) | X86_PTE_US | X86_PTE_RW | X86_PTE_P;
    }

    @Override
    public long leafEntry(LeafSize leaf, long leafPa, int i, Attributes a) {
        long entryPa = leafPa + i * leaf.entrySpan();
        long raw = (entryPa & X86_PTE_ADDR_MASK) | X86_PTE_P | X86_PTE_A | X86_PTE_D;
        if (leaf.level() < levels - 1) {
            raw |= X86_PTE_PS;
        }
        if (a.write()) {
            raw |= X86_PTE_RW;
        }
        if (a.user()) {
            raw |= X86_PTE_US;
        }
        if (!a.execute()) {
            raw |= X86_PTE_XD;
        }
        long patIndex = switch (a.cache()) {
            case WRITE_BACK -> PAT_IDX_WB;
            case WRITE_THROUGH -> PAT_IDX_WT;
            case NON_CACHEABLE -> PAT_IDX_UC_MINUS;
            case DEVICE -> PAT_IDX_UC;
        };
        return raw | patIndex << X86_PTE_CACHE_SHIFT;
    }

    @Override
    public boolean isTable(int level, long raw) {
        return level < levels - 1 && (raw & (X86_PTE_P | X86_PTE_PS)) == X86_PTE_P; // what decode calls a table
    }

    @Override
    public long tableAddress(int level, long raw) {
        return raw & X86_PTE_ADDR_MASK;
    }

    @Override
    public boolean isRunEntry(int level, long raw) {
        return false; // x86-64 has no multi-entry leaves
    }

    @Override
    public Descriptor decode(int level, long raw, long va) {
        if ((raw & X86_PTE_P) == 0) {
            return Descriptor.INVALID;
        }
        boolean ps = (raw & X86_PTE_PS) != 0;
        if (level < levels - 3 && ps) { // PS is reserved in a PML4E (Table 4-15) and a PML5E (Table 4-14)
            return new Descriptor.Invalid("reserved bit 7 (PS) set in a " + (level == levels - 4 ? "PML4E" : "PML5E"));
        }
        if (level < levels - 1 && !ps) {
            return new Descriptor.Table(raw & X86_PTE_ADDR_MASK, (raw & X86_PTE_RW) != 0, (raw & X86_PTE_US) != 0,
                (raw & X86_PTE_XD) == 0); // 4.6: R/W and U/S are ANDed, XD ORed, along the walk
        }
        LeafSize leaf = level == levels - 3 ? page1g : level == levels - 2 ? page2m : page4k;
        long span = leaf.size();
        if (level < levels - 1) {
            long reserved = (span - 1) & X86_PTE_ADDR_MASK & ~X86_PTE_PAT_LARGE; // bits 29:13 or 20:13
            if ((raw & reserved) != 0) {
                return new Descriptor.Invalid("reserved address bits set in a " + leaf + " page entry");
            }
        }
        long pa = (raw & X86_PTE_ADDR_MASK & -span) | (va & (span - 1));
        boolean write = (raw & X86_PTE_RW) != 0;
        boolean user = (raw & X86_PTE_US) != 0;
        boolean execute = (raw & X86_PTE_XD) == 0;
        CachePolicy cache = switch ((int) ((raw & X86_PTE_CACHE_MASK) >>> X86_PTE_CACHE_SHIFT)) {
            case PAT_IDX_WB -> CachePolicy.WRITE_BACK;
            case PAT_IDX_WT -> CachePolicy.WRITE_THROUGH;
            case PAT_IDX_UC_MINUS -> CachePolicy.NON_CACHEABLE;
            default -> CachePolicy.DEVICE;
        };
        return new Descriptor.Leaf(pa, leaf, new Attributes(true, write, execute, user, cache));
    }

    @Override
    public final String toString() {
        return name;
    }
}
