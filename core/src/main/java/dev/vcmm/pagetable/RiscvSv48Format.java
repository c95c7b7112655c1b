package dev.vcmm.pagetable;

/**
 * {@code riscv-sv48}: RISC-V Sv48 virtual memory (satp.MODE=9), 48-bit sign-extended virtual addresses, 56-bit
 * physical addresses, four levels; 4 KiB pages, 2 MiB megapages, 1 GiB gigapages and 512 GiB terapages, with
 * Svpbmt memory types. The format of RISC-V harts and of the RISC-V IOMMU's first-stage tables.
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: The RISC-V Instruction Set Manual, Volume II: Privileged Architecture (20211203 and later),
 * 4.5 "Sv48: Page-Based 48-bit Virtual-Memory System" (Figures "Sv48 virtual address", "Sv48 physical
 * address", "Sv48 page table entry"), 4.3.1 (PTE attributes), 4.3.2 "Virtual Address Translation Process"
 * (with LEVELS=4, PTESIZE=8) and the "Svpbmt" chapter.
 *
 * <pre>
 * Sv48 virtual address: bits 63:48 must equal bit 47 (else the access faults)
 *  47        39 38        30 29        21 20        12 11           0
 * +------------+------------+------------+------------+--------------+
 * |  VPN[3]    |  VPN[2]    |  VPN[1]    |  VPN[0]    | page offset  |
 * +------------+------------+------------+------------+--------------+
 *    level 0      level 1      level 2      level 3    (levels count from the root, satp.PPN)
 *  512 GiB leaf   1 GiB leaf   2 MiB leaf   4 KiB leaf
 *
 * Sv48 page table entry
 *  63  62 61 60      54 53      37 36      28 27      19 18      10 9   8 7 6 5 4 3 2 1 0
 * +---+------+----------+----------+----------+----------+----------+-----+-+-+-+-+-+-+-+-+
 * | N | PBMT | reserved |  PPN[3]  |  PPN[2]  |  PPN[1]  |  PPN[0]  | RSW |D|A|G|U|X|W|R|V|
 * +---+------+----------+----------+----------+----------+----------+-----+-+-+-+-+-+-+-+-+
 *   PPN = physical address >> 12; a terapage leaf needs PPN[2:0] = 0, a gigapage PPN[1:0] = 0, a megapage
 *   PPN[0] = 0 (else "misaligned superpage" page fault)
 *   Pointer PTE: V=1 R=W=X=0, U=A=D=0, PBMT=0. Leaf: V=1, R/W/X/U from the attributes, A=D=1, G=0.
 *   PBMT: 0 PMA (write-back), 1 NC (non-cacheable), 2 IO (device), 3 reserved. Bits 60:54 and N: 0.
 * </pre>
 *
 * <p>The codec, its decoding rules and the attribute mapping are described in {@code RiscvSvFormat}:
 * execute-only is expressible, write-without-read and write-through are refused.
 */
public final class RiscvSv48Format extends RiscvSvFormat {

    /** The single instance. */
    public static final RiscvSv48Format INSTANCE = new RiscvSv48Format();

    private RiscvSv48Format() {
        super("riscv-sv48", 4);
    }
}
