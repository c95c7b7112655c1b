package dev.vcmm.pagetable;

import java.util.ArrayList;
import java.util.List;

/**
 * {@code arm64-s2-4k} (and {@code arm64-s2-4k-ipaN}): Armv8-A VMSAv8-64 stage 2 translation (IPA to PA, the
 * hypervisor's tables named by VTTBR_EL2, and SMMUv3 stage 2), 4 KiB granule, a configurable IPA size
 * (VTCR_EL2.T0SZ, default 40 bits) with concatenated initial-level tables, and a 48-bit output size
 * (VTCR_EL2.PS). 4 KiB pages, 2 MiB and 1 GiB blocks, contiguous runs of 16 (64 KiB, 32 MiB).
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: Arm Architecture Reference Manual for A-profile (DDI 0487 K.a), chapter D8: D8 "Address
 * translation" ("Concatenated translation tables for the initial stage 2 lookup": up to 16 tables at the
 * initial level replace one level of lookup, the table then aligned to its whole size; VTCR_EL2.SL0 names the
 * initial level), D8 "Stage 2 block and page descriptor" layout, D8 "Stage 2 memory type and Cacheability
 * attributes when FEAT_S2FWB is disabled" (MemAttr[3:0]), D8 "Stage 2 data access permissions" (S2AP) and
 * "Stage 2 instruction execution permissions" (XN, without FEAT_XNX), D8 (AF), D8 (Contiguous bit).
 *
 * <pre>
 * Geometry: the fewest levels whose root has at most 2^13 entries (16 concatenated 512-entry tables):
 *   IPA bits  levels (Arm)   root entries (tables concatenated)
 *   32..34    2..3 (L2-L3)   2^(ipa-21): 2048 (4) .. 8192 (16)
 *   35..43    1..3 (L1-L3)   2^(ipa-30): 32 .. 8192 (up to 16 concatenated at 40-43; 40 bits: 1024, 2 tables)
 *   44..48    0..3 (L0-L3)   2^(ipa-39): 32 .. 512
 *
 * Table descriptor: next-level table address [47:12] | 0b11; bits 63:59 (the stage 1 hierarchical
 * controls) are RES0 at stage 2 and written 0.
 *
 * Block (level 1: OA[47:30], level 2: OA[47:21]; bits 1:0 = 01) and page (level 3: OA[47:12]; 11) descriptors
 *  63   59 58  55 54  53  52  51 50 49 48 47             n n-1  12 11 10  9 8  7  6 5        2  1  0
 * +-------+------+---+---+----+---+--+----+---------------+-------+--+---+----+------+----------+--+--+
 * |ignored| SW   |XN |res|Cont|DBM|  |res0| OA [47:n]     | res0  |0 |AF | SH | S2AP |MemAttr   | t| 1|
 * +-------+------+---+---+----+---+--+----+---------------+-------+--+---+----+------+----------+--+--+
 *   S2AP (bits 7:6): 00 no data access, 01 read-only, 10 write-only, 11 read/write (every exception level)
 *   XN (bit 54): 1 = no instruction fetch at any EL; bit 53 (XN[0] with FEAT_XNX) written 0 and ignored
 *   MemAttr[3:2] 00: Device, [1:0] the type (01 nGnRE written); else Normal, [3:2] outer and [1:0] inner
 *   cacheability: 01 non-cacheable, 10 write-through, 11 write-back (written equal)
 *   SH 11 for normal memory, 00 for Device; AF = 1 written; AF = 0 read is an Access flag fault
 * </pre>
 *
 * <p>Attributes: stage 2 permissions apply to every exception level, so a stage 2 mapping is always
 * {@link Attributes#user() user}-reachable; a privileged-only mapping cannot be expressed and is refused.
 * Data and instruction permissions are independent (S2AP and XN), so write-only, execute-only and
 * write+execute without read are all expressible; a mapping with no permission at all is refused.
 * Memory types: WRITE_BACK 0b1111, WRITE_THROUGH 0b1010, NON_CACHEABLE 0b0101, DEVICE 0b0001 (Device-nGnRE).
 */
public final class Arm64Stage2Format implements PageTableFormat, DirtyBits {

    /** DBM (bit 51): the entry is writable-clean while S2AP[1] is clear (Arm ARM D8, hardware dirty state). */
    static final long S2_PTE_DBM = 1L << 51;

    @Override
    public boolean isDirty(long raw) {
        return (raw & S2_PTE_S2AP_WRITE) != 0;
    }

    @Override
    public boolean isWritableClean(long raw) {
        return (raw & (S2_PTE_DBM | S2_PTE_S2AP_WRITE)) == S2_PTE_DBM;
    }

    @Override
    public long clean(long raw) {
        return isDirty(raw) ? (raw | S2_PTE_DBM) & ~S2_PTE_S2AP_WRITE : raw;
    }

    @Override
    public long markDirty(long raw) {
        return isWritableClean(raw) ? raw | S2_PTE_S2AP_WRITE : raw;
    }


    static final long S2_PTE_VALID = 1L;
    static final long S2_PTE_TYPE_TABLE_OR_PAGE = 1L << 1;
    static final int S2_PTE_MEMATTR_SHIFT = 2;
    static final long S2_PTE_MEMATTR_MASK = 0xFL << S2_PTE_MEMATTR_SHIFT;
    static final long S2_PTE_S2AP_READ = 1L << 6;   // S2AP[0]
    static final long S2_PTE_S2AP_WRITE = 1L << 7;  // S2AP[1]
    static final long S2_PTE_SH_INNER = 3L << 8;
    static final long S2_PTE_AF = 1L << 10;
    static final long S2_PTE_CONT = 1L << 52;
    static final long S2_PTE_XN = 1L << 54;
    static final long S2_PTE_OA_MASK = 0x0000_FFFF_FFFF_F000L;

    static final int MEMATTR_DEVICE_NGNRE = 0b0001;
    static final int MEMATTR_NORMAL_NC = 0b0101;
    static final int MEMATTR_NORMAL_WT = 0b1010;
    static final int MEMATTR_NORMAL_WB = 0b1111;

    private static final int GRANULE_SHIFT = 12;
    private static final int MAX_ROOT_BITS = 9 + 4; // 16 concatenated tables

    /** {@code arm64-s2-4k}: 40-bit IPA, walk from level 1 with two concatenated tables. */
    public static final Arm64Stage2Format INSTANCE = new Arm64Stage2Format(40);

    private final int ipaBits;
    private final int levels;
    private final int startLevel;
    private final String name;
    private final LeafSize[] block;
    private final LeafSize[] run;
    private final List<LeafSize> leaves;

    private Arm64Stage2Format(int ipaBits) {
        this.ipaBits = ipaBits;
        int lv = 1;
        while (ipaBits - (GRANULE_SHIFT + 9 * (lv - 1)) > MAX_ROOT_BITS) {
            lv++;
        }
        this.levels = lv;
        this.startLevel = 4 - lv;
        this.name = ipaBits == 40 ? "arm64-s2-4k" : "arm64-s2-4k-ipa" + ipaBits;
        this.block = new LeafSize[levels];
        this.run = new LeafSize[levels];
        List<LeafSize> all = new ArrayList<>();
        for (int level = 0; level < levels; level++) {
            int arm = startLevel + level;
            if (arm == 0) {
                continue; // no level-0 blocks with the 4K granule and a 48-bit OA
            }
            long span = 1L << levelShift(level);
            if (arm >= 2) {
                run[level] = new LeafSize(span * 16, level, 16);
                all.add(run[level]);
            }
            block[level] = new LeafSize(span, level, 1);
            all.add(block[level]);
        }
        this.leaves = List.copyOf(all);
    }

    /**
     * Makes the stage 2 format of one input size.
     *
     * @param ipaBits the input (IPA) size, {@code 64 - VTCR_EL2.T0SZ}: 32 to 48
     * @return the stage 2 format for that size
     * @throws IllegalArgumentException naming the argument out of range
     */
    public static Arm64Stage2Format withIpaBits(int ipaBits) {
        if (ipaBits < 32 || ipaBits > 48) {
            throw new IllegalArgumentException("ipaBits=" + ipaBits + " must be in 32..48 for 4K stage 2");
        }
        return ipaBits == 40 ? INSTANCE : new Arm64Stage2Format(ipaBits);
    }

    /**
     * {@return the Arm level (0-3) of this interface's {@code level}}
     *
     * @param level a table level of this interface, 0 at the root
     */
    public int armLevel(int level) {
        return startLevel + level;
    }

    /** {@return how many 4 KiB tables the root concatenates (1 if none)} */
    public int concatenatedTables() {
        return Math.max(1, 1 << (levelBits(0) - 9));
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
        return ipaBits;
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
        return GRANULE_SHIFT + 9 * (levels - 1 - level);
    }

    @Override
    public int levelBits(int level) {
        return level == 0 ? ipaBits - levelShift(0) : 9;
    }

    /** A root of fewer than 32 entries is allocated as a 256-byte slot (the table allocator's smallest). */
    @Override
    public long tableBytes(int level) {
        return Math.max(Arm64VmsaFormat.MIN_TABLE_BYTES, 8L << levelBits(level));
    }

    @Override
    public List<LeafSize> leafSizes() {
        return leaves;
    }

    /** An IPA above the VTCR_EL2.T0SZ size is a level-0 translation fault (D8); there is no upper range. */
    @Override
    public boolean isValidVa(long va) {
        return (va >>> ipaBits) == 0;
    }

    @Override
    public void checkAttributes(Attributes a) {
        if (!a.user()) {
            throw new UnsupportedAttributeException(name + " cannot express a privileged-only mapping (stage 2"
                + " permissions apply at every exception level): map it with user access, e.g. rw-u: " + a);
        }
        if (!a.read() && !a.write() && !a.execute()) {
            throw new UnsupportedAttributeException(name + " cannot express a mapping with no permission: " + a);
        }
    }

    @Override
    public long tableEntry(int level, long tablePa) {
        return (tablePa & S2_PTE_OA_MASK) | S2_PTE_TYPE_TABLE_OR_PAGE | S2_PTE_VALID;
    }

    @Override
    public long leafEntry(LeafSize leaf, long leafPa, int i, Attributes a) {
        long entryPa = leafPa + i * leaf.entrySpan();
        long raw = (entryPa & S2_PTE_OA_MASK) | S2_PTE_VALID | S2_PTE_AF;
        if (leaf.level() == levels - 1) {
            raw |= S2_PTE_TYPE_TABLE_OR_PAGE;
        }
        if (leaf.isRun()) {
            raw |= S2_PTE_CONT;
        }
        long memAttr = switch (a.cache()) {
            case WRITE_BACK -> MEMATTR_NORMAL_WB;
            case WRITE_THROUGH -> MEMATTR_NORMAL_WT;
            case NON_CACHEABLE -> MEMATTR_NORMAL_NC;
            case DEVICE -> MEMATTR_DEVICE_NGNRE;
        };
        raw |= memAttr << S2_PTE_MEMATTR_SHIFT;
        if (a.cache() != CachePolicy.DEVICE) {
            raw |= S2_PTE_SH_INNER;
        }
        if (a.read()) {
            raw |= S2_PTE_S2AP_READ;
        }
        if (a.write()) {
            raw |= S2_PTE_S2AP_WRITE;
        }
        if (!a.execute()) {
            raw |= S2_PTE_XN;
        }
        return raw;
    }

    @Override
    public boolean isTable(int level, long raw) {
        return level < levels - 1 && (raw & (S2_PTE_VALID | S2_PTE_TYPE_TABLE_OR_PAGE)) == (S2_PTE_VALID | S2_PTE_TYPE_TABLE_OR_PAGE);
    }

    @Override
    public long tableAddress(int level, long raw) {
        return raw & S2_PTE_OA_MASK;
    }

    @Override
    public boolean isRunEntry(int level, long raw) {
        return (raw & S2_PTE_CONT) != 0 && (raw & S2_PTE_VALID) != 0 && !isTable(level, raw);
    }

    @Override
    public Descriptor decode(int level, long raw, long va) {
        if ((raw & S2_PTE_VALID) == 0) {
            return Descriptor.INVALID;
        }
        boolean tableOrPage = (raw & S2_PTE_TYPE_TABLE_OR_PAGE) != 0;
        boolean last = level == levels - 1;
        if (!last && tableOrPage) {
            return new Descriptor.Table(raw & S2_PTE_OA_MASK); // no hierarchical controls at stage 2
        }
        if (last && !tableOrPage) {
            return new Descriptor.Invalid("reserved descriptor 0b01 at level 3");
        }
        if (block[level] == null) {
            return new Descriptor.Invalid("block descriptor at level " + armLevel(level) + " (reserved for the 4KB granule)");
        }
        if ((raw & S2_PTE_AF) == 0) {
            return new Descriptor.Invalid("access flag clear at level " + armLevel(level), FaultReason.ACCESS_FLAG);
        }
        boolean cont = (raw & S2_PTE_CONT) != 0;
        LeafSize leaf = cont && run[level] != null ? run[level] : block[level];
        long span = leaf.entrySpan();
        long pa = (raw & S2_PTE_OA_MASK & -span) | (va & (span - 1));
        int memAttr = (int) ((raw & S2_PTE_MEMATTR_MASK) >>> S2_PTE_MEMATTR_SHIFT);
        CachePolicy cache = switch (memAttr >>> 2) { // the outer cacheability decides; inner is written equal
            case 0b00 -> CachePolicy.DEVICE;
            case 0b01 -> CachePolicy.NON_CACHEABLE;
            case 0b10 -> CachePolicy.WRITE_THROUGH;
            default -> CachePolicy.WRITE_BACK;
        };
        return new Descriptor.Leaf(pa, leaf, new Attributes((raw & S2_PTE_S2AP_READ) != 0, (raw & S2_PTE_S2AP_WRITE) != 0,
            (raw & S2_PTE_XN) == 0, true, cache));
    }

    @Override
    public String toString() {
        return name;
    }
}
