package dev.vcmm.pagetable;

import java.util.List;

/**
 * {@code armv7-short}: the Armv7-A short-descriptor translation table format (VMSAv7, 32-bit input
 * addresses, TTBCR.N = 0 so TTBR0 covers the whole space), two levels; 4 KiB small pages, 64 KiB large
 * pages, 1 MiB sections and 16 MiB supersections. The format of the Qualcomm SMMU the original VCMM ran on
 * (and of Linux's {@code io-pgtable-arm-v7s}, which stops at 32-bit output addresses).
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: Arm Architecture Reference Manual Armv7-A and Armv7-R edition (DDI 0406C), B3.5
 * "Short-descriptor translation table format", B3.5.1 "Short-descriptor translation table format
 * descriptors" (figures B3-4 first-level and B3-5 second-level descriptors), B3.7 "Memory access control",
 * B3.7.1 "Access permissions" (AP[2:0] with SCTLR.AFE = 0, table B3-8), B3.7.2 "Execute-never
 * restrictions on instruction fetching" (a fetch needs XN = 0 <em>and</em> read permission), B3.7.3
 * "Domains", B3.8 "Memory region attributes" and B3.8.2 "Short-descriptor format memory region attributes,
 * without TEX remap" (TEX[2:0], C, B with SCTLR.TRE = 0, table B3-10).
 *
 * <pre>
 * Level 1 (4096 entries, a 16 KiB table aligned to 16 KiB, indexed by VA[31:20])
 *  31                                                  10  9  8     5  4   3  2  1  0
 * +------------------------------------------------------+---+--------+---+--+---+--+--+
 * |        level-2 table base address PA[31:10]          |IMP| Domain |SBZ|NS|PXN| 0| 1|  page table
 * +------------------------------------------------------+---+--------+---+--+---+--+--+
 *  31                     20 19 18  17 16  15 14  12 11 10  9  8      5  4  3  2  1  0
 * +-------------------------+--+--+---+--+----+-----+-----+---+---------+--+--+--+--+---+
 * | section base PA[31:20]  |NS| 0|nG | S|AP2 | TEX | AP  |IMP|  Domain |XN| C| B| 1|PXN|  section (1 MiB)
 * +-------------------------+--+--+---+--+----+-----+-----+---+---------+--+--+--+--+---+
 *  31          24 23      20 19 18  17 16  15 14  12 11 10  9  8      5  4  3  2  1  0
 * +--------------+----------+--+--+---+--+----+-----+-----+---+---------+--+--+--+--+---+
 * | PA[31:24]    |PA[35:32] |NS| 1|nG | S|AP2 | TEX | AP  |IMP|PA[39:36]|XN| C| B| 1|PXN|  supersection (16 MiB)
 * +--------------+----------+--+--+---+--+----+-----+-----+---+---------+--+--+--+--+---+
 *   bits[1:0] = 00: fault (translation fault); 11: reserved here (no PXN support), decoded as invalid
 *   a supersection is 16 identical entries at a 16-aligned index, each holding the supersection's base
 *
 * Level 2 (256 entries, a 1 KiB table aligned to 1 KiB, indexed by VA[19:12])
 *  31                         16  15 14  12 11 10  9  8   6  5  4  3  2  1  0
 * +-----------------------------+---+-----+--+--+---+-----+-----+--+--+--+--+
 * | large page base PA[31:16]   |XN | TEX |nG| S|AP2| SBZ | AP  | C| B| 0| 1|  large page (64 KiB)
 * +-----------------------------+---+-----+--+--+---+-----+-----+--+--+--+--+
 *  31                                     12 11 10  9  8   6  5  4  3  2  1  0
 * +-----------------------------------------+--+--+---+-----+-----+--+--+--+--+
 * | small page base PA[31:12]               |nG| S|AP2| TEX | AP  | C| B| 1|XN|  small page (4 KiB)
 * +-----------------------------------------+--+--+---+-----+-----+--+--+--+--+
 *   bits[1:0] = 00: fault; a large page is 16 identical entries at a 16-aligned index
 *
 * AP[2:0] (AP2:AP), SCTLR.AFE = 0, table B3-8         TEX[2:0] C B, SCTLR.TRE = 0, table B3-10
 *   000 no access         (decoded: r/w/x all denied)     000 0 1  shareable Device       DEVICE
 *   001 PL1 RW, PL0 none  written for rw-                000 1 0  inner+outer WT, no WA  WRITE_THROUGH
 *   010 PL1 RW, PL0 RO    (decoded: r--u, see below)     001 0 0  inner+outer NC         NON_CACHEABLE
 *   011 PL1 RW, PL0 RW    written for rw-u               001 1 1  inner+outer WB, WA     WRITE_BACK
 *   100 reserved          (decoded: invalid)
 *   101 PL1 RO, PL0 none  written for r--
 *   110 PL1 RO, PL0 RO    deprecated (decoded: r--u)
 *   111 PL1 RO, PL0 RO    written for r--u
 * </pre>
 *
 * <p>Written entries: NS = 0, nG = 0 (global), PXN = 0, Domain = 0 (the software programming the MMU must
 * make domain 0 a Client in DACR, so permissions are checked; the decoder assumes so), S = 1 for normal
 * memory and 0 for Device (ignored for Device anyway). Execute permission is the one XN bit, for both
 * privileges. Mappings without read permission cannot be expressed and are refused.
 *
 * <p>Decoding: an instruction fetch needs read permission as well as XN = 0 (B3.7.2), so execute is
 * reported only for readable entries. AP = 010 (privileged read-write, user read-only) has no exact
 * {@link Attributes}; it decodes to read-only for both ({@code r--u}), which never reports an access the
 * hardware forbids and keeps the entry's user reachability and its write protection (the one thing lost is
 * the privileged write). Memory types decode back to the four written above; the others map to the nearest
 * policy: Strongly-ordered (000 0 0) and non-shareable Device (010 0 0) to {@code DEVICE}, write-back
 * without write-allocate (000 1 1) to {@code WRITE_BACK}, and the cacheable encodings TEX = 1BB, C:B = AA
 * (outer BB, inner AA) by their inner policy AA (00 NC, 01 WB, 10 WT, 11 WB), the one the processor's
 * caches closest to it honour. Reserved encodings (001 0 1, 010 0 1, 010 1 x, 011 x x) and the
 * IMPLEMENTATION DEFINED 001 1 0 decode as invalid, as do reserved AP = 100 and L1 type 0b11.
 *
 * <p>Physical addresses: only supersections carry PA[39:32], so {@link #paBits()} is 40 but sections,
 * large and small pages reach the first 4 GiB only. The generic mapper picks leaves by alignment, so a map
 * of a range above 4 GiB succeeds only where it is covered by supersections (va and pa 16 MiB aligned, the
 * length a multiple of 16 MiB); elsewhere {@link #leafEntry} refuses with an {@link AddressRangeException}
 * before anything is written, and the mapper rolls back. For the same reason a supersection above 4 GiB
 * cannot be split: a partial unmap of one fails with an {@link AddressRangeException} and leaves it mapped
 * whole (what the same call unmapped before reaching it stays unmapped, as after a failed split for want of
 * table memory). Page tables themselves must lie below 4 GiB (descriptors and TTBR0 hold 32-bit table addresses).
 */
public final class Armv7ShortFormat implements PageTableFormat {

    /** The single instance. */
    public static final Armv7ShortFormat INSTANCE = new Armv7ShortFormat();

    // descriptor type, bits[1:0]
    static final int ARMV7S_PTE_TYPE_MASK = 0b11;
    static final int ARMV7S_PTE_L1_TYPE_TABLE = 0b01;
    static final int ARMV7S_PTE_L1_TYPE_SECTION = 0b10;
    static final int ARMV7S_PTE_L1_TYPE_RESERVED = 0b11;
    static final int ARMV7S_PTE_L2_TYPE_LARGE = 0b01;
    static final int ARMV7S_PTE_L2_SMALL = 1 << 1;        // 1x: small page (bit 0 is XN)

    // level 1: page-table descriptor
    static final long ARMV7S_PTE_TABLE_ADDR_MASK = 0xFFFF_FC00L; // PA[31:10]

    // level 1: section and supersection
    static final int ARMV7S_PTE_SECT_PXN = 1;
    static final int ARMV7S_PTE_SECT_B = 1 << 2;
    static final int ARMV7S_PTE_SECT_C = 1 << 3;
    static final int ARMV7S_PTE_SECT_XN = 1 << 4;
    static final int ARMV7S_PTE_SECT_DOMAIN_SHIFT = 5;     // [8:5]; PA[39:36] in a supersection
    static final int ARMV7S_PTE_SECT_AP_SHIFT = 10;        // AP[1:0] at [11:10]
    static final int ARMV7S_PTE_SECT_TEX_SHIFT = 12;       // TEX[2:0] at [14:12]
    static final int ARMV7S_PTE_SECT_AP2 = 1 << 15;
    static final int ARMV7S_PTE_SECT_S = 1 << 16;
    static final int ARMV7S_PTE_SECT_NG = 1 << 17;
    static final int ARMV7S_PTE_SECT_SUPER = 1 << 18;
    static final int ARMV7S_PTE_SECT_NS = 1 << 19;
    static final long ARMV7S_PTE_SECT_ADDR_MASK = 0xFFF0_0000L;   // PA[31:20]
    static final long ARMV7S_PTE_SUPER_ADDR_MASK = 0xFF00_0000L;  // PA[31:24]
    static final int ARMV7S_PTE_SUPER_PA35_32_SHIFT = 20;         // PA[35:32] at [23:20]
    static final int ARMV7S_PTE_SUPER_PA39_36_SHIFT = 5;          // PA[39:36] at [8:5]

    // level 2: large page
    static final int ARMV7S_PTE_LARGE_TEX_SHIFT = 12;      // TEX[2:0] at [14:12]
    static final int ARMV7S_PTE_LARGE_XN = 1 << 15;
    static final long ARMV7S_PTE_LARGE_ADDR_MASK = 0xFFFF_0000L;  // PA[31:16]

    // level 2: small page
    static final int ARMV7S_PTE_SMALL_XN = 1;
    static final int ARMV7S_PTE_SMALL_TEX_SHIFT = 6;       // TEX[2:0] at [8:6]
    static final long ARMV7S_PTE_SMALL_ADDR_MASK = 0xFFFF_F000L;  // PA[31:12]

    // level 2: fields shared by large and small pages
    static final int ARMV7S_PTE_PAGE_B = 1 << 2;
    static final int ARMV7S_PTE_PAGE_C = 1 << 3;
    static final int ARMV7S_PTE_PAGE_AP_SHIFT = 4;         // AP[1:0] at [5:4]
    static final int ARMV7S_PTE_PAGE_AP2 = 1 << 9;
    static final int ARMV7S_PTE_PAGE_S = 1 << 10;
    static final int ARMV7S_PTE_PAGE_NG = 1 << 11;

    // AP[2:0] (SCTLR.AFE = 0), table B3-8
    static final int AP_NONE = 0b000;
    static final int AP_PRIV_RW = 0b001;
    static final int AP_PRIV_RW_USER_RO = 0b010;
    static final int AP_RW = 0b011;
    static final int AP_RESERVED = 0b100;
    static final int AP_PRIV_RO = 0b101;
    static final int AP_RO_DEPRECATED = 0b110;
    static final int AP_RO = 0b111;

    // TEX[2:0]:C:B (SCTLR.TRE = 0), table B3-10, as the 5-bit value TEX << 2 | C << 1 | B
    static final int TEXCB_WRITE_BACK = 0b001_11;
    static final int TEXCB_WRITE_THROUGH = 0b000_10;
    static final int TEXCB_NON_CACHEABLE = 0b001_00;
    static final int TEXCB_DEVICE = 0b000_01;

    private static final long FOUR_GIB = 1L << 32;

    private static final LeafSize SUPERSECTION_16M = new LeafSize(16L << 20, 0, 16);
    private static final LeafSize SECTION_1M = new LeafSize(1L << 20, 0, 1);
    private static final LeafSize LARGE_64K = new LeafSize(64L << 10, 1, 16);
    private static final LeafSize SMALL_4K = new LeafSize(4L << 10, 1, 1);
    private static final List<LeafSize> LEAVES = List.of(SUPERSECTION_16M, SECTION_1M, LARGE_64K, SMALL_4K);

    private Armv7ShortFormat() {
    }

    @Override
    public String name() {
        return "armv7-short";
    }

    @Override
    public int levels() {
        return 2;
    }

    @Override
    public int vaBits() {
        return 32;
    }

    @Override
    public int paBits() {
        return 40;
    }

    @Override
    public int entryBytes() {
        return 4;
    }

    @Override
    public int levelShift(int level) {
        return level == 0 ? 20 : 12;
    }

    @Override
    public int levelBits(int level) {
        return level == 0 ? 12 : 8;
    }

    @Override
    public List<LeafSize> leafSizes() {
        return LEAVES;
    }

    @Override
    public boolean isValidVa(long va) {
        return va >= 0 && va < FOUR_GIB;
    }

    @Override
    public void checkAttributes(Attributes a) {
        if (!a.read()) {
            throw new UnsupportedAttributeException(name() + " cannot express a mapping without read permission: " + a);
        }
    }

    @Override
    public long tableEntry(int level, long tablePa) {
        if (level != 0) {
            throw new IllegalArgumentException(name() + ": level=" + level + " has no table descriptors (only level 0 does)");
        }
        if (tablePa < 0 || tablePa >= FOUR_GIB || (tablePa & ~ARMV7S_PTE_TABLE_ADDR_MASK) != 0) {
            throw new AddressRangeException(name() + ": level-2 table at pa=0x" + Long.toHexString(tablePa)
                + " must be 1 KiB aligned and below 4 GiB");
        }
        return tablePa | ARMV7S_PTE_L1_TYPE_TABLE; // NS = 0, Domain = 0, PXN = 0
    }

    /**
     * {@inheritDoc}
     *
     * <p>Every entry of a supersection or a large page holds the leaf's base: the value does not depend on
     * {@code i}.
     *
     * @throws AddressRangeException if the leaf reaches above 4 GiB and is not a supersection
     */
    @Override
    public long leafEntry(LeafSize leaf, long leafPa, int i, Attributes a) {
        if (leaf.equals(SUPERSECTION_16M)) {
            return supersection(leafPa, a);
        }
        if (leafPa < 0 || leafPa + leaf.size() > FOUR_GIB) {
            throw new AddressRangeException(name() + ": pa=0x" + Long.toHexString(leafPa) + " cannot be mapped by a "
                + leaf + " leaf: only 16 MiB supersections reach physical addresses at or above 4 GiB");
        }
        if (leaf.equals(SECTION_1M)) {
            return (leafPa & ARMV7S_PTE_SECT_ADDR_MASK) | ARMV7S_PTE_L1_TYPE_SECTION | sectionAttributes(a);
        }
        int texcb = texcb(a.cache());
        int ap = ap(a);
        long raw = (long) (((ap >> 2) != 0 ? ARMV7S_PTE_PAGE_AP2 : 0) | (ap & 3) << ARMV7S_PTE_PAGE_AP_SHIFT
            | (texcb & 2) << 2 | (texcb & 1) << 2 // C to bit 3, B to bit 2
            | (a.cache() != CachePolicy.DEVICE ? ARMV7S_PTE_PAGE_S : 0));
        if (leaf.equals(LARGE_64K)) {
            return (leafPa & ARMV7S_PTE_LARGE_ADDR_MASK) | raw | (long) (texcb >> 2) << ARMV7S_PTE_LARGE_TEX_SHIFT
                | (a.execute() ? 0 : ARMV7S_PTE_LARGE_XN) | ARMV7S_PTE_L2_TYPE_LARGE;
        }
        if (leaf.equals(SMALL_4K)) {
            return (leafPa & ARMV7S_PTE_SMALL_ADDR_MASK) | raw | (long) (texcb >> 2) << ARMV7S_PTE_SMALL_TEX_SHIFT
                | (a.execute() ? 0 : ARMV7S_PTE_SMALL_XN) | ARMV7S_PTE_L2_SMALL;
        }
        throw new IllegalArgumentException(name() + ": leaf=" + leaf + " is not one of " + LEAVES);
    }

    @Override
    public long leafPaLimit(LeafSize leaf) {
        return leaf.equals(SUPERSECTION_16M) ? 1L << 40 : FOUR_GIB;
    }

    private long supersection(long leafPa, Attributes a) {
        return (leafPa & ARMV7S_PTE_SUPER_ADDR_MASK)
            | ((leafPa >>> 32) & 0xF) << ARMV7S_PTE_SUPER_PA35_32_SHIFT
            | ((leafPa >>> 36) & 0xF) << ARMV7S_PTE_SUPER_PA39_36_SHIFT
            | ARMV7S_PTE_SECT_SUPER | ARMV7S_PTE_L1_TYPE_SECTION | sectionAttributes(a);
    }

    /** The attribute bits sections and supersections share: B, C, XN, AP, TEX, S. Domain 0, nG = NS = PXN = 0. */
    private static long sectionAttributes(Attributes a) {
        int texcb = texcb(a.cache());
        int ap = ap(a);
        return (long) ((texcb & 1) << 2 | (texcb & 2) << 2 // B to bit 2, C to bit 3
            | (a.execute() ? 0 : ARMV7S_PTE_SECT_XN)
            | (ap & 3) << ARMV7S_PTE_SECT_AP_SHIFT | ((ap >> 2) != 0 ? ARMV7S_PTE_SECT_AP2 : 0)
            | (texcb >> 2) << ARMV7S_PTE_SECT_TEX_SHIFT
            | (a.cache() != CachePolicy.DEVICE ? ARMV7S_PTE_SECT_S : 0));
    }

    private static int ap(Attributes a) {
        if (a.write()) {
            return a.user() ? AP_RW : AP_PRIV_RW;
        }
        return a.user() ? AP_RO : AP_PRIV_RO;
    }

    private static int texcb(CachePolicy cache) {
        return switch (cache) {
            case WRITE_BACK -> TEXCB_WRITE_BACK;
            case WRITE_THROUGH -> TEXCB_WRITE_THROUGH;
            case NON_CACHEABLE -> TEXCB_NON_CACHEABLE;
            case DEVICE -> TEXCB_DEVICE;
        };
    }

    @Override
    public boolean isTable(int level, long raw) {
        return level == 0 && ((int) raw & ARMV7S_PTE_TYPE_MASK) == ARMV7S_PTE_L1_TYPE_TABLE;
    }

    @Override
    public long tableAddress(int level, long raw) {
        return raw & ARMV7S_PTE_TABLE_ADDR_MASK;
    }

    @Override
    public boolean isRunEntry(int level, long raw) {
        int type = (int) raw & ARMV7S_PTE_TYPE_MASK;
        return level == 0
            ? type == ARMV7S_PTE_L1_TYPE_SECTION && (raw & ARMV7S_PTE_SECT_SUPER) != 0 // a supersection copy
            : type == ARMV7S_PTE_L2_TYPE_LARGE;                                        // a large-page copy
    }

    @Override
    public Descriptor decode(int level, long raw, long va) {
        int type = (int) raw & ARMV7S_PTE_TYPE_MASK;
        if (type == 0) {
            return Descriptor.INVALID;
        }
        if (level == 0) {
            return switch (type) {
                case ARMV7S_PTE_L1_TYPE_TABLE -> new Descriptor.Table(raw & ARMV7S_PTE_TABLE_ADDR_MASK);
                case ARMV7S_PTE_L1_TYPE_SECTION -> decodeSection(raw, va);
                default -> new Descriptor.Invalid("reserved level-1 descriptor type 0b11 (no PXN support)");
            };
        }
        boolean large = type == ARMV7S_PTE_L2_TYPE_LARGE;
        int ap = ((raw & ARMV7S_PTE_PAGE_AP2) != 0 ? 4 : 0) | (int) (raw >>> ARMV7S_PTE_PAGE_AP_SHIFT) & 3;
        int tex = (int) (raw >>> (large ? ARMV7S_PTE_LARGE_TEX_SHIFT : ARMV7S_PTE_SMALL_TEX_SHIFT)) & 7;
        boolean xn = (raw & (large ? ARMV7S_PTE_LARGE_XN : ARMV7S_PTE_SMALL_XN)) != 0;
        LeafSize leaf = large ? LARGE_64K : SMALL_4K;
        long base = raw & (large ? ARMV7S_PTE_LARGE_ADDR_MASK : ARMV7S_PTE_SMALL_ADDR_MASK);
        return leaf(leaf, base | (va & (leaf.size() - 1)), ap, tex, raw, xn);
    }

    private Descriptor decodeSection(long raw, long va) {
        int ap = ((raw & ARMV7S_PTE_SECT_AP2) != 0 ? 4 : 0) | (int) (raw >>> ARMV7S_PTE_SECT_AP_SHIFT) & 3;
        int tex = (int) (raw >>> ARMV7S_PTE_SECT_TEX_SHIFT) & 7;
        boolean xn = (raw & ARMV7S_PTE_SECT_XN) != 0;
        if ((raw & ARMV7S_PTE_SECT_SUPER) == 0) {
            return leaf(SECTION_1M, (raw & ARMV7S_PTE_SECT_ADDR_MASK) | (va & (SECTION_1M.size() - 1)), ap, tex, raw, xn);
        }
        long base = (raw & ARMV7S_PTE_SUPER_ADDR_MASK)
            | ((raw >>> ARMV7S_PTE_SUPER_PA35_32_SHIFT) & 0xF) << 32
            | ((raw >>> ARMV7S_PTE_SUPER_PA39_36_SHIFT) & 0xF) << 36;
        return leaf(SUPERSECTION_16M, base | (va & (SUPERSECTION_16M.size() - 1)), ap, tex, raw, xn);
    }

    /** C is bit 3 and B bit 2 in every leaf descriptor. */
    private Descriptor leaf(LeafSize leaf, long pa, int ap, int tex, long raw, boolean xn) {
        int texcb = tex << 2 | (int) (raw >>> 2) & 3;
        CachePolicy cache = cachePolicy(texcb);
        if (cache == null) {
            return new Descriptor.Invalid(String.format("reserved or implementation-defined TEX:C:B=0b%s_%s in a %s leaf",
                Integer.toBinaryString(tex), Integer.toBinaryString(texcb & 3), leaf));
        }
        boolean read;
        boolean write;
        boolean user;
        switch (ap) {
            case AP_NONE -> { read = false; write = false; user = false; }
            case AP_PRIV_RW -> { read = true; write = true; user = false; }
            case AP_PRIV_RW_USER_RO, AP_RO_DEPRECATED, AP_RO -> { read = true; write = false; user = true; }
            case AP_RW -> { read = true; write = true; user = true; }
            case AP_PRIV_RO -> { read = true; write = false; user = false; }
            default -> {
                return new Descriptor.Invalid("reserved AP[2:0]=0b100 in a " + leaf + " leaf");
            }
        }
        boolean execute = read && !xn; // B3.7.2: a fetch needs read permission as well as XN = 0
        return new Descriptor.Leaf(pa, leaf, new Attributes(read, write, execute, user, cache));
    }

    /** {@return the policy of a TEX:C:B value (SCTLR.TRE = 0, table B3-10), or null if reserved or IMP DEF} */
    private static CachePolicy cachePolicy(int texcb) {
        if ((texcb & 0b100_00) != 0) { // TEX = 1BB: cacheable, outer BB, inner AA = C:B; decoded by the inner policy
            return switch (texcb & 3) {
                case 0b00 -> CachePolicy.NON_CACHEABLE;
                case 0b10 -> CachePolicy.WRITE_THROUGH;
                default -> CachePolicy.WRITE_BACK; // 01 WB write-allocate, 11 WB no write-allocate
            };
        }
        return switch (texcb) {
            case 0b000_00, 0b000_01, 0b010_00 -> CachePolicy.DEVICE; // strongly-ordered, shareable / non-shareable Device
            case 0b000_10 -> CachePolicy.WRITE_THROUGH;
            case 0b000_11, 0b001_11 -> CachePolicy.WRITE_BACK;
            case 0b001_00 -> CachePolicy.NON_CACHEABLE;
            default -> null; // 001 0 1, 010 0 1, 010 1 x, 011 x x reserved; 001 1 0 IMPLEMENTATION DEFINED
        };
    }

    @Override
    public String toString() {
        return name();
    }
}
