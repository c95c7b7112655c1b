package dev.vcmm.pagetable;

import java.util.ArrayList;
import java.util.List;

/**
 * {@code arm64-4k}, {@code arm64-16k}, {@code arm64-64k} (and their {@code -vaN}, {@code -ttbr1} variants):
 * Armv8-A VMSAv8-64 stage 1 translation with a 4 KiB, 16 KiB or 64 KiB translation granule, a configurable
 * input size ({@code 64 - TxSZ} bits) and output size (TCR_ELx.IPS), for the lower (TTBR0) or the upper
 * (TTBR1) VA range. The format of the CPU and of SMMUv3 stage 1 (the same descriptors). The 48-bit TTBR0
 * 4 KiB format keeps its own class, {@link Arm64Lpae4kFormat}, with the same encoding.
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: Arm Architecture Reference Manual for A-profile (DDI 0487 K.a), chapter D8 "The AArch64 Virtual
 * Memory System Architecture": D8 "Address translation" (TxSZ and the initial lookup level per granule,
 * Tables "Translation granule 4KB/16KB/64KB, stage 1 ... initial lookup level"), D8 "Translation table
 * descriptor formats" ("Table descriptor", "Block descriptor", "Page descriptor" for each granule), D8
 * "Memory attributes" (AttrIndx, SH), D8 "Access permissions" (AP[2:1], PXN, UXN, and the hierarchical
 * APTable, UXNTable/XNTable, PXNTable), D8 "The Access flag", D8 "The Contiguous bit" (entries per run:
 * 4KB 16 at every level; 16KB 32 at level 2 and 128 at level 3; 64KB 32 at levels 2 and 3) and D8
 * "Address size faults" (an output address above the IPS size).
 *
 * <pre>
 * Geometry (g = granule shift 12/14/16, b = g - 3 index bits per full table = 9/11/13):
 *   levels = ceil((vaBits - g) / b), the walk starts at Arm level 4 - levels; level L of this interface is
 *   Arm level (4 - levels + L). The root indexes VA[vaBits-1 : shift(0)] and may have fewer than 2^b entries.
 *
 *   granule  vaBits  Arm levels  root bits  blocks (Arm level)                 contiguous runs
 *   4K       39..48  1..3 / 0..3  9 / 1..9  1 GiB (L1), 2 MiB (L2)             16 x 2 MiB, 16 x 4 KiB
 *   16K      36..48  2..3 .. 0..3 11 / 1..11 32 MiB (L2)                        32 x 32 MiB, 128 x 16 KiB
 *   64K      42..48  2..3 / 1..3  13 / 6..13 512 MiB (L2)                       32 x 512 MiB, 32 x 64 KiB
 *   (64 GiB 16K and 4 TiB 64K level-1 blocks need FEAT_LPA2/FEAT_LPA and a 52-bit OA: not modelled; level-0
 *   blocks do not exist without FEAT_LPA2. The 16 x 1 GiB 4K level-1 run is decoded as single blocks and
 *   not written.)
 *
 * Table descriptor (every level but the last)
 *  63  62 61  60      59     58    52 51  48 47                              g g-1         2  1  0
 * +---+------+-------+------+--------+------+--------------------------------+-------------+--+--+
 * |NST|APTab |UXNTab |PXNTab| ignored| res0 | next-level table address [47:g]|  ignored    | 1| 1|
 * +---+------+-------+------+--------+------+--------------------------------+-------------+--+--+
 *   APTable: 00 no limit, 01 no EL0 access below, 10 no write below, 11 no write and no EL0 access below
 *   UXNTable: no EL0 execution below; PXNTable: no privileged execution below (D8 "Hierarchical
 *   control of data/instruction access permissions"). Written as 0: the leaf alone decides. NSTable is
 *   ignored (only the Non-secure state is modelled).
 *
 * Block (bits 1:0 = 01) and page (level 3, bits 1:0 = 11) descriptors
 *  63   59 58  55 54  53  52  51 50 49 48 47               n n-1   g g-1  12 11  10  9 8 7  6 5  4    2  1  0
 * +-------+------+---+---+----+---+--+----+-----------------+-------+-------+--+---+----+----+--+-------+--+--+
 * |ignored| SW   |UXN|PXN|Cont|DBM|GP|res0| OA [47:n]       | res0  | (res0)|nG|AF | SH | AP |NS|AttrIdx| t| 1|
 * +-------+------+---+---+----+---+--+----+-----------------+-------+-------+--+---+----+----+--+-------+--+--+
 *   n = log2 of the leaf's entry span (g for a page, 21/30 for 4K blocks, 25 for 16K, 29 for 64K)
 *   AP[2:1] (bits 7:6): 00 EL1 RW, 01 EL1 RW + EL0 RW, 10 EL1 RO, 11 EL1 RO + EL0 RO
 *   AF (bit 10) = 0: an Access flag fault on any access (D8; no FEAT_HAFDBS hardware update modelled)
 *   OA bits at or above IPS: an Address size fault (D8)
 * </pre>
 *
 * <p>Attributes are encoded exactly as {@link Arm64Lpae4kFormat} encodes them (MAIR layout {@link
 * Arm64Lpae4kFormat#MAIR}; execute follows the mapping's privilege; mappings without read are refused).
 */
public final class Arm64VmsaFormat implements PageTableFormat, DirtyBits {

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


    /** Which TTBR the tables serve: the lower VA range {@code [0, 2^vaBits)} or the upper {@code [-2^vaBits, 0)}. */
    public enum Range {
        /** TTBR0_ELx, T0SZ = 64 - vaBits. */
        TTBR0,
        /** TTBR1_ELx, T1SZ = 64 - vaBits: addresses whose bits 63:vaBits are all ones. */
        TTBR1
    }

    /** The smallest table this format asks of the table allocator: roots of fewer entries are padded to it. */
    static final int MIN_TABLE_BYTES = 256;

    static final long ARM64_PTE_VALID = 1L;
    static final long ARM64_PTE_TYPE_TABLE_OR_PAGE = 1L << 1;
    static final int ARM64_PTE_ATTRINDX_SHIFT = 2;
    static final long ARM64_PTE_ATTRINDX_MASK = 7L << ARM64_PTE_ATTRINDX_SHIFT;
    static final long ARM64_PTE_AP_EL0 = 1L << 6;      // AP[1]
    static final long ARM64_PTE_AP_RDONLY = 1L << 7;   // AP[2]
    static final long ARM64_PTE_SH_INNER = 3L << 8;
    static final long ARM64_PTE_AF = 1L << 10;
    static final long ARM64_PTE_CONT = 1L << 52;
    static final long ARM64_PTE_PXN = 1L << 53;
    static final long ARM64_PTE_UXN = 1L << 54;
    static final long ARM64_PTE_OA_MASK_48 = 0x0000_FFFF_FFFF_F000L; // [47:12], narrowed to [47:g] per granule
    static final long ARM64_TABLE_PXNTABLE = 1L << 59;
    static final long ARM64_TABLE_UXNTABLE = 1L << 60;
    static final long ARM64_TABLE_APTABLE_NO_EL0 = 1L << 61;   // APTable[0]
    static final long ARM64_TABLE_APTABLE_RDONLY = 1L << 62;   // APTable[1]

    private final int granuleShift;
    private final int vaBits;
    private final int paBits;
    private final Range range;
    private final String name;
    private final int levels;
    private final int startLevel;
    private final long oaMask;
    private final long oaOutOfRange;
    /** Per level of this interface: the single-entry leaf (block or page), or null; and the run leaf, or null. */
    private final LeafSize[] block;
    private final LeafSize[] run;
    private final List<LeafSize> leaves;

    private Arm64VmsaFormat(int granuleShift, int vaBits, int paBits, Range range) {
        this.granuleShift = granuleShift;
        this.vaBits = vaBits;
        this.paBits = paBits;
        this.range = range;
        int b = granuleShift - 3;
        this.levels = (vaBits - granuleShift + b - 1) / b;
        this.startLevel = 4 - levels;
        this.oaMask = ARM64_PTE_OA_MASK_48 & -(1L << granuleShift);
        this.oaOutOfRange = oaMask & -(1L << paBits);
        this.name = "arm64-" + granuleName(granuleShift) + (vaBits == 48 ? "" : "-va" + vaBits)
            + (paBits == 48 ? "" : "-pa" + paBits) + (range == Range.TTBR1 ? "-ttbr1" : "");
        this.block = new LeafSize[levels];
        this.run = new LeafSize[levels];
        List<LeafSize> all = new ArrayList<>();
        for (int level = 0; level < levels; level++) {
            int arm = startLevel + level;
            long span = 1L << levelShift(level);
            boolean leafLevel = arm == 3 || switch (granuleShift) {
                case 12 -> arm == 1 || arm == 2;   // D8: 4K blocks at levels 1 and 2
                default -> arm == 2;               // 16K and 64K blocks at level 2 only (48-bit OA)
            };
            if (!leafLevel) {
                continue;
            }
            int contEntries = contiguousEntries(granuleShift, arm);
            if (contEntries > 0 && (1L << levelBits(level)) >= contEntries) {
                run[level] = new LeafSize(span * contEntries, level, contEntries);
                all.add(run[level]);
            }
            block[level] = new LeafSize(span, level, 1);
            all.add(block[level]);
        }
        this.leaves = List.copyOf(all);
    }

    /** D8 "The Contiguous bit": entries per run that this format writes, 0 where it writes none. */
    private static int contiguousEntries(int granuleShift, int armLevel) {
        return switch (granuleShift) {
            case 12 -> armLevel >= 2 ? 16 : 0;   // level 1's 16 x 1 GiB is decoded, not written
            case 14 -> armLevel == 3 ? 128 : 32;
            default -> 32;
        };
    }

    private static String granuleName(int granuleShift) {
        return (1 << (granuleShift - 10)) + "k";
    }

    /**
     * Makes the stage 1 format of one translation regime's configuration.
     *
     * @param granule the translation granule: 4096, 16384 or 65536
     * @param vaBits  the input size, {@code 64 - TxSZ}: 39-48 for 4K, 36-48 for 16K, 42-48 for 64K
     * @param paBits  the output size TCR_ELx.IPS encodes: 32, 36, 40, 42, 44 or 48
     * @param range   TTBR0 (lower) or TTBR1 (upper) addresses
     * @return the stage 1 format
     * @throws IllegalArgumentException naming the argument out of range
     */
    public static Arm64VmsaFormat stage1(int granule, int vaBits, int paBits, Range range) {
        int g = switch (granule) {
            case 4096 -> 12;
            case 16384 -> 14;
            case 65536 -> 16;
            default -> throw new IllegalArgumentException("granule=" + granule + " must be 4096, 16384 or 65536");
        };
        int min = minVaBits(granule);
        if (vaBits < min || vaBits > 48) {
            throw new IllegalArgumentException("vaBits=" + vaBits + " must be in " + min + ".." + 48 + " for the "
                + granuleName(g) + " granule (52 bits need FEAT_LVA, not modelled)");
        }
        if (paBits != 32 && paBits != 36 && paBits != 40 && paBits != 42 && paBits != 44 && paBits != 48) {
            throw new IllegalArgumentException("paBits=" + paBits + " must be an IPS size: 32, 36, 40, 42, 44 or 48");
        }
        return new Arm64VmsaFormat(g, vaBits, paBits, java.util.Objects.requireNonNull(range, "range"));
    }

    /**
     * {@return the smallest input size this class accepts for {@code granule} bytes (the ranges)}
     *
     * @param granule the translation granule: 4096, 16384 or 65536
     */
    public static int minVaBits(int granule) {
        return switch (granule) {
            case 4096 -> 39;
            case 16384 -> 36;
            default -> 42;
        };
    }

    /** {@return the granule in bytes} */
    public long granule() {
        return 1L << granuleShift;
    }

    /** {@return which VA range (TTBR) the tables serve} */
    public Range range() {
        return range;
    }

    /**
     * {@return the Arm level (0-3) of this interface's {@code level}: the walk starts at {@code 4 - levels()}}
     *
     * @param level a table level of this interface, 0 at the root
     */
    public int armLevel(int level) {
        return startLevel + level;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public int levels() {
        return levels;
    }

    @Override
    public int vaBits() {
        return vaBits;
    }

    @Override
    public int paBits() {
        return paBits;
    }

    @Override
    public int entryBytes() {
        return 8;
    }

    @Override
    public int levelShift(int level) {
        return granuleShift + (granuleShift - 3) * (levels - 1 - level);
    }

    @Override
    public int levelBits(int level) {
        return level == 0 ? vaBits - levelShift(0) : granuleShift - 3;
    }

    /**
     * A root of fewer entries than the table allocator's smallest slot ({@value #MIN_TABLE_BYTES} bytes) is
     * allocated as one of those: the walk reads only its first {@code 2^levelBits(0)} entries, and the larger
     * alignment still meets TTBR's rule (a table aligned to its size, at least 64 bytes; D19 "TTBR0_EL1").
     */
    @Override
    public long tableBytes(int level) {
        return Math.max(MIN_TABLE_BYTES, 8L << levelBits(level));
    }

    @Override
    public List<LeafSize> leafSizes() {
        return leaves;
    }

    /** TTBR0: bits 63:vaBits all zero; TTBR1: all one (D8 "VA ranges", selected by VA[55] and TxSZ). */
    @Override
    public boolean isValidVa(long va) {
        long top = va >> vaBits;
        return range == Range.TTBR0 ? top == 0 : top == -1L;
    }

    @Override
    public void checkAttributes(Attributes a) {
        if (!a.read()) {
            throw new UnsupportedAttributeException(name + " cannot express a mapping without read permission: " + a);
        }
    }

    @Override
    public long tableEntry(int level, long tablePa) {
        return (tablePa & oaMask) | ARM64_PTE_TYPE_TABLE_OR_PAGE | ARM64_PTE_VALID;
    }

    @Override
    public long leafEntry(LeafSize leaf, long leafPa, int i, Attributes a) {
        long entryPa = leafPa + i * leaf.entrySpan();
        if ((entryPa & -(1L << paBits)) != 0) {
            throw new AddressRangeException("pa=0x" + Long.toHexString(entryPa) + " is outside the " + paBits
                + "-bit output addresses of " + name);
        }
        long raw = (entryPa & oaMask) | ARM64_PTE_VALID | ARM64_PTE_AF;
        if (leaf.level() == levels - 1) {
            raw |= ARM64_PTE_TYPE_TABLE_OR_PAGE;
        }
        if (leaf.isRun()) {
            raw |= ARM64_PTE_CONT;
        }
        int attrIndx = switch (a.cache()) {
            case WRITE_BACK -> Arm64Lpae4kFormat.ATTR_IDX_WB;
            case NON_CACHEABLE -> Arm64Lpae4kFormat.ATTR_IDX_NC;
            case DEVICE -> Arm64Lpae4kFormat.ATTR_IDX_DEVICE;
            case WRITE_THROUGH -> Arm64Lpae4kFormat.ATTR_IDX_WT;
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
        if (!(a.execute() && a.user())) {
            raw |= ARM64_PTE_UXN;
        }
        if (!(a.execute() && !a.user())) {
            raw |= ARM64_PTE_PXN;
        }
        return raw;
    }

    @Override
    public boolean isTable(int level, long raw) {
        return level < levels - 1 && (raw & (ARM64_PTE_VALID | ARM64_PTE_TYPE_TABLE_OR_PAGE)) == (ARM64_PTE_VALID | ARM64_PTE_TYPE_TABLE_OR_PAGE)
            && (raw & oaOutOfRange) == 0;
    }

    @Override
    public long tableAddress(int level, long raw) {
        return raw & oaMask;
    }

    @Override
    public boolean isRunEntry(int level, long raw) {
        return (raw & ARM64_PTE_CONT) != 0 && (raw & ARM64_PTE_VALID) != 0 && !isTable(level, raw);
    }

    @Override
    public Descriptor decode(int level, long raw, long va) {
        if ((raw & ARM64_PTE_VALID) == 0) {
            return Descriptor.INVALID;
        }
        boolean tableOrPage = (raw & ARM64_PTE_TYPE_TABLE_OR_PAGE) != 0;
        boolean last = level == levels - 1;
        if (!last && tableOrPage) {
            if ((raw & oaOutOfRange) != 0) {
                return new Descriptor.Invalid("table address 0x" + Long.toHexString(raw & oaMask) + " above the "
                    + paBits + "-bit output size at level " + armLevel(level), FaultReason.ADDRESS_SIZE);
            }
            boolean noEl0 = (raw & ARM64_TABLE_APTABLE_NO_EL0) != 0;
            boolean noWrite = (raw & ARM64_TABLE_APTABLE_RDONLY) != 0;
            return new Descriptor.Table(raw & oaMask, !noWrite, !noEl0, (raw & ARM64_TABLE_UXNTABLE) == 0,
                (raw & ARM64_TABLE_PXNTABLE) == 0);
        }
        if (last && !tableOrPage) {
            return new Descriptor.Invalid("reserved descriptor 0b01 at level 3");
        }
        if (block[level] == null) {
            return new Descriptor.Invalid("block descriptor at level " + armLevel(level) + " (no blocks there with the "
                + granuleName(granuleShift) + " granule and a 48-bit OA)");
        }
        boolean cont = (raw & ARM64_PTE_CONT) != 0;
        LeafSize leaf = cont && run[level] != null ? run[level] : block[level];
        long span = leaf.entrySpan();
        if ((raw & oaOutOfRange) != 0) {
            return new Descriptor.Invalid("output address 0x" + Long.toHexString(raw & oaMask) + " above the "
                + paBits + "-bit output size at level " + armLevel(level), FaultReason.ADDRESS_SIZE);
        }
        if ((raw & ARM64_PTE_AF) == 0) {
            return new Descriptor.Invalid("access flag clear at level " + armLevel(level), FaultReason.ACCESS_FLAG);
        }
        long pa = (raw & oaMask & -span) | (va & (span - 1));
        boolean user = (raw & ARM64_PTE_AP_EL0) != 0;
        boolean write = (raw & ARM64_PTE_AP_RDONLY) == 0;
        boolean execute = user ? (raw & ARM64_PTE_UXN) == 0 : (raw & ARM64_PTE_PXN) == 0;
        CachePolicy cache = switch ((int) ((raw & ARM64_PTE_ATTRINDX_MASK) >>> ARM64_PTE_ATTRINDX_SHIFT)) {
            case Arm64Lpae4kFormat.ATTR_IDX_WB -> CachePolicy.WRITE_BACK;
            case Arm64Lpae4kFormat.ATTR_IDX_NC -> CachePolicy.NON_CACHEABLE;
            case Arm64Lpae4kFormat.ATTR_IDX_WT -> CachePolicy.WRITE_THROUGH;
            default -> CachePolicy.DEVICE;
        };
        return new Descriptor.Leaf(pa, leaf, new Attributes(true, write, execute, user, cache));
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Arm64VmsaFormat f && f.name.equals(name);
    }

    @Override
    public int hashCode() {
        return name.hashCode();
    }

    @Override
    public String toString() {
        return name;
    }
}
