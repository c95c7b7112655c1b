package dev.vcmm.pagetable;

import java.util.List;

/**
 * {@code arm64-4k}: Armv8-A VMSAv8-64 stage 1 translation, 4 KiB granule, 48-bit input addresses
 * (TTBR0 range), four levels 0..3; 4 KiB pages, 2 MiB and 1 GiB blocks, and the contiguous hint for runs
 * of 16 entries (64 KiB of pages, 32 MiB of 2 MiB blocks). The format of the CPU and of Arm SMMUs
 * (SMMUv3 stage 1 uses the same descriptors).
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: Arm Architecture Reference Manual for A-profile (DDI 0487), chapter D8 "The AArch64 Virtual
 * Memory System Architecture": "Translation table descriptor formats" (table, block and page descriptors
 * for the 4KB granule), "Stage 1 data access permissions" (AP[2:1]), "Instruction access permissions"
 * (PXN, UXN), "Memory attribute fields in stage 1" (AttrIndx into MAIR_ELx) and "The Contiguous bit".
 *
 * <pre>
 * Table descriptor, levels 0-2
 *  63  62 61  60    59     58    52 51  48 47                              12 11          2  1  0
 * +---+------+------+------+--------+------+----------------------------------+-------------+--+--+
 * |NST|APTab |UXNTab|PXNTab| ignored| res0 | next-level table address [47:12] |  ignored    | 1| 1|
 * +---+------+------+------+--------+------+----------------------------------+-------------+--+--+
 *   written as 0: no hierarchical restriction (the leaf alone decides); read back as the walker's limits:
 *   APTable 01 no EL0, 1x no write; UXNTable no EL0 execute; PXNTable no privileged execute (D8)
 *
 * Block (level 1: OA[47:30], level 2: OA[47:21]) and page (level 3: OA[47:12]) descriptors
 *  63   59 58  55 54  53  52  51 50 49  48 47                   n n-1  16 15 12 11  10 9  8 7  6 5  4    2  1  0
 * +-------+------+---+---+----+--+--+----+-----------------------+--------+-----+--+---+----+----+--+-------+--+--+
 * |ignored| SW   |UXN|PXN|Cont|DBM|GP|res0| output address [47:n] |  res0  |     |nG|AF | SH | AP |NS|AttrIdx| t| 1|
 * +-------+------+---+---+----+--+--+----+-----------------------+--------+-----+--+---+----+----+--+-------+--+--+
 *   t (bit 1): 0 = block at levels 1-2 (reserved at level 0 and level 3), 1 = page at level 3
 *   AP[2:1]: 00 EL1 RW / EL0 none, 01 EL1 RW / EL0 RW, 10 EL1 RO / EL0 none, 11 EL1 RO / EL0 RO
 *   SH: 11 inner shareable (normal memory), 00 (device memory)   AF: always 1 (no access-flag faults)
 *   Cont: one of 16 adjacent, aligned entries that map a contiguous output range with the same attributes
 * </pre>
 *
 * <p>Memory attributes use this MAIR_EL1 layout, which the software programming the MMU must install:
 * {@value #MAIR} (Attr0 = 0xFF normal write-back read/write-allocate, Attr1 = 0x44 normal non-cacheable,
 * Attr2 = 0x04 Device-nGnRE, Attr3 = 0xBB normal write-through). Execute permission follows the privilege
 * of the mapping: a user mapping that may execute clears UXN and sets PXN; a privileged one clears PXN and
 * sets UXN. Mappings that are not readable (write-only, execute-only) cannot be expressed and are refused.
 */
public final class Arm64Lpae4kFormat implements PageTableFormat, DirtyBits {

    /** DBM (bit 51): the entry is writable-clean while AP[2] is set (Arm ARM D8, hardware dirty state). */
    static final long ARM64_PTE_DBM = 1L << 51;

    @Override
    public boolean isDirty(long raw) {
        return (raw & ARM64_PTE_AP_RDONLY) == 0;
    }

    @Override
    public boolean isWritableClean(long raw) {
        return (raw & (ARM64_PTE_DBM | ARM64_PTE_AP_RDONLY)) == (ARM64_PTE_DBM | ARM64_PTE_AP_RDONLY);
    }

    @Override
    public long clean(long raw) {
        return isDirty(raw) ? raw | ARM64_PTE_DBM | ARM64_PTE_AP_RDONLY : raw;
    }

    @Override
    public long markDirty(long raw) {
        return isWritableClean(raw) ? raw & ~ARM64_PTE_AP_RDONLY : raw;
    }


    /** The single instance. */
    public static final Arm64Lpae4kFormat INSTANCE = new Arm64Lpae4kFormat();

    /** The MAIR_EL1 value the attribute indices assume. */
    public static final long MAIR = 0x0000_0000_BB04_44FFL;

    static final long ARM64_PTE_VALID = 1L;
    static final long ARM64_PTE_TYPE_TABLE_OR_PAGE = 1L << 1;
    static final int ARM64_PTE_ATTRINDX_SHIFT = 2;
    static final long ARM64_PTE_ATTRINDX_MASK = 7L << ARM64_PTE_ATTRINDX_SHIFT;
    static final long ARM64_PTE_NS = 1L << 5;
    static final long ARM64_PTE_AP_EL0 = 1L << 6;      // AP[1]: EL0 access
    static final long ARM64_PTE_AP_RDONLY = 1L << 7;   // AP[2]: read-only
    static final long ARM64_PTE_SH_INNER = 3L << 8;
    static final long ARM64_PTE_AF = 1L << 10;
    static final long ARM64_PTE_NG = 1L << 11;
    static final long ARM64_PTE_CONT = 1L << 52;
    static final long ARM64_PTE_PXN = 1L << 53;
    static final long ARM64_PTE_UXN = 1L << 54;
    static final long ARM64_PTE_ADDR_MASK = 0x0000_FFFF_FFFF_F000L;

    static final int ATTR_IDX_WB = 0;
    static final int ATTR_IDX_NC = 1;
    static final int ATTR_IDX_DEVICE = 2;
    static final int ATTR_IDX_WT = 3;

    private static final LeafSize BLOCK_1G = new LeafSize(1L << 30, 1, 1);
    private static final LeafSize CONT_32M = new LeafSize(32L << 20, 2, 16);
    private static final LeafSize BLOCK_2M = new LeafSize(2L << 20, 2, 1);
    private static final LeafSize CONT_64K = new LeafSize(64L << 10, 3, 16);
    private static final LeafSize PAGE_4K = new LeafSize(4L << 10, 3, 1);
    private static final List<LeafSize> LEAVES = List.of(BLOCK_1G, CONT_32M, BLOCK_2M, CONT_64K, PAGE_4K);

    private Arm64Lpae4kFormat() {
    }

    @Override
    public String name() {
        return "arm64-4k";
    }

    @Override
    public int levels() {
        return 4;
    }

    @Override
    public int vaBits() {
        return 48;
    }

    @Override
    public int paBits() {
        return 48;
    }

    @Override
    public int entryBytes() {
        return 8;
    }

    @Override
    public int levelShift(int level) {
        return 39 - 9 * level;
    }

    @Override
    public int levelBits(int level) {
        return 9;
    }

    @Override
    public List<LeafSize> leafSizes() {
        return LEAVES;
    }

    @Override
    public boolean isValidVa(long va) {
        return va >= 0 && va < (1L << 48);
    }

    @Override
    public void checkAttributes(Attributes a) {
        if (!a.read()) {
            throw new UnsupportedAttributeException(name() + " cannot express a mapping without read permission: " + a);
        }
    }

    @Override
    public long tableEntry(int level, long tablePa) {
        return (tablePa & ARM64_PTE_ADDR_MASK) | ARM64_PTE_TYPE_TABLE_OR_PAGE | ARM64_PTE_VALID;
    }

    @Override
    public long leafEntry(LeafSize leaf, long leafPa, int i, Attributes a) {
        long entryPa = leafPa + i * leaf.entrySpan();
        long raw = (entryPa & ARM64_PTE_ADDR_MASK) | ARM64_PTE_VALID | ARM64_PTE_AF;
        if (leaf.level() == 3) {
            raw |= ARM64_PTE_TYPE_TABLE_OR_PAGE;
        }
        if (leaf.isRun()) {
            raw |= ARM64_PTE_CONT;
        }
        int attrIndx = switch (a.cache()) {
            case WRITE_BACK -> ATTR_IDX_WB;
            case NON_CACHEABLE -> ATTR_IDX_NC;
            case DEVICE -> ATTR_IDX_DEVICE;
            case WRITE_THROUGH -> ATTR_IDX_WT;
        };
        raw |= (long) attrIndx << ARM64_PTE_ATTRINDX_SHIFT;
        if (a.cache() != CachePolicy.DEVICE) {
            raw |= ARM64_PTE_SH_INNER;
        }
        if (a.user()) {
            raw |= ARM64_PTE_AP_EL0;
        }
        if (!a.write()) {
            raw |= ARM64_PTE_AP_RDONLY;
        }
        boolean uxn = !(a.execute() && a.user());
        boolean pxn = !(a.execute() && !a.user());
        if (uxn) {
            raw |= ARM64_PTE_UXN;
        }
        if (pxn) {
            raw |= ARM64_PTE_PXN;
        }
        return raw;
    }

    @Override
    public boolean isTable(int level, long raw) {
        return level < 3 && (raw & (ARM64_PTE_VALID | ARM64_PTE_TYPE_TABLE_OR_PAGE)) == (ARM64_PTE_VALID | ARM64_PTE_TYPE_TABLE_OR_PAGE);
    }

    @Override
    public boolean isRunEntry(int level, long raw) {
        return (raw & ARM64_PTE_CONT) != 0 && (raw & ARM64_PTE_VALID) != 0 && !isTable(level, raw);
    }

    @Override
    public long tableAddress(int level, long raw) {
        return raw & ARM64_PTE_ADDR_MASK;
    }

    @Override
    public Descriptor decode(int level, long raw, long va) {
        if ((raw & ARM64_PTE_VALID) == 0) {
            return Descriptor.INVALID;
        }
        boolean tableOrPage = (raw & ARM64_PTE_TYPE_TABLE_OR_PAGE) != 0;
        if (level < 3 && tableOrPage) { // D8: APTable[62:61], UXNTable 60, PXNTable 59 limit every leaf below
            return new Descriptor.Table(raw & ARM64_PTE_ADDR_MASK, (raw & Arm64VmsaFormat.ARM64_TABLE_APTABLE_RDONLY) == 0,
                (raw & Arm64VmsaFormat.ARM64_TABLE_APTABLE_NO_EL0) == 0, (raw & Arm64VmsaFormat.ARM64_TABLE_UXNTABLE) == 0,
                (raw & Arm64VmsaFormat.ARM64_TABLE_PXNTABLE) == 0);
        }
        if (level == 3 && !tableOrPage) {
            return new Descriptor.Invalid("reserved descriptor 0b01 at level 3");
        }
        if (level == 0) {
            return new Descriptor.Invalid("block descriptor at level 0 (reserved for 4KB granule, 48-bit OA)");
        }
        if ((raw & ARM64_PTE_AF) == 0) {
            return new Descriptor.Invalid("access flag clear (access flag fault)", FaultReason.ACCESS_FLAG); // D8
        }
        boolean cont = (raw & ARM64_PTE_CONT) != 0;
        LeafSize leaf = switch (level) {
            case 1 -> BLOCK_1G;
            case 2 -> cont ? CONT_32M : BLOCK_2M;
            default -> cont ? CONT_64K : PAGE_4K;
        };
        long span = leaf.entrySpan();
        long pa = (raw & ARM64_PTE_ADDR_MASK & -span) | (va & (span - 1));
        boolean user = (raw & ARM64_PTE_AP_EL0) != 0;
        boolean write = (raw & ARM64_PTE_AP_RDONLY) == 0;
        boolean execute = user ? (raw & ARM64_PTE_UXN) == 0 : (raw & ARM64_PTE_PXN) == 0;
        CachePolicy cache = switch ((int) ((raw & ARM64_PTE_ATTRINDX_MASK) >>> ARM64_PTE_ATTRINDX_SHIFT)) {
            case ATTR_IDX_WB -> CachePolicy.WRITE_BACK;
            case ATTR_IDX_NC -> CachePolicy.NON_CACHEABLE;
            case ATTR_IDX_WT -> CachePolicy.WRITE_THROUGH;
            default -> CachePolicy.DEVICE; // Attr2 and the unprogrammed Attr4-7 (0x00, Device-nGnRnE)
        };
        return new Descriptor.Leaf(pa, leaf, new Attributes(true, write, execute, user, cache));
    }

    @Override
    public String toString() {
        return name();
    }
}
