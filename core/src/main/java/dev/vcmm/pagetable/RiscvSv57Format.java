package dev.vcmm.pagetable;

/**
 * {@code riscv-sv57}: RISC-V Sv57 virtual memory (satp.MODE=10), 57-bit sign-extended virtual addresses,
 * 56-bit physical addresses, five levels; 4 KiB pages, 2 MiB megapages, 1 GiB gigapages, 512 GiB terapages
 * and 256 TiB petapages, with Svpbmt memory types and Svnapot 64 KiB pages. The format of RISC-V harts with Sv57 and of the RISC-V
 * IOMMU's first-stage tables in Sv57 mode.
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: The RISC-V Instruction Set Manual, Volume II: Privileged Architecture (20211203 and later),
 * "Sv57: Page-Based 57-bit Virtual-Memory System" (Figures "Sv57 virtual address", "Sv57 physical address",
 * "Sv57 page table entry"), 4.3.1 (PTE attributes), 4.3.2 "Virtual Address Translation Process" (with
 * LEVELS=5, PTESIZE=8) and the "Svpbmt" chapter.
 *
 * <pre>
 * Sv57 virtual address: bits 63:57 must equal bit 56 (else the access faults)
 *  56      48 47      39 38      30 29      21 20      12 11           0
 * +----------+----------+----------+----------+----------+--------------+
 * |  VPN[4]  |  VPN[3]  |  VPN[2]  |  VPN[1]  |  VPN[0]  | page offset  |
 * +----------+----------+----------+----------+----------+--------------+
 *   level 0    level 1    level 2    level 3    level 4    (levels count from the root, satp.PPN)
 *   256 TiB    512 GiB    1 GiB      2 MiB      4 KiB leaf
 *
 * Sv57 page table entry
 *  63  62 61 60      54 53    46 45    37 36    28 27    19 18    10 9   8 7 6 5 4 3 2 1 0
 * +---+------+----------+--------+--------+--------+--------+--------+-----+-+-+-+-+-+-+-+-+
 * | N | PBMT | reserved | PPN[4] | PPN[3] | PPN[2] | PPN[1] | PPN[0] | RSW |D|A|G|U|X|W|R|V|
 * +---+------+----------+--------+--------+--------+--------+--------+-----+-+-+-+-+-+-+-+-+
 *   PPN[4] is 8 bits (PA[55:48]), PPN[3..0] 9 bits each; a superpage leaf at level L needs the PPN fields
 *   below it zero ("misaligned superpage" page fault otherwise)
 *   Pointer PTE: V=1 R=W=X=0, U=A=D=0, PBMT=0. Leaf: V=1, R/W/X/U from the attributes, A=D=1, G=0.
 *
 * Svnapot 64 KiB page ("Svnapot" chapter, "Page-based NAPOT PTE encoding"): 16 identical level-4 PTEs with
 *   N (bit 63) = 1 and PPN[3:0] = 1000; PA = PPN[43:4] &lt;&lt; 16 | VA[15:0]. N in a pointer PTE, above the last
 *   level or with another PPN[3:0] is reserved: a page fault.
 * </pre>
 *
 * <p>The codec, its decoding rules and the attribute mapping are those of {@code RiscvSvFormat}: execute-only
 * is expressible, write-without-read and write-through are refused. Unlike {@code riscv-sv39} and
 * {@code riscv-sv48} (which keep refusing N=1), Sv57 writes and reads Svnapot 64 KiB pages.
 */
public final class RiscvSv57Format extends RiscvSvFormat {

    /** The single instance. */
    public static final RiscvSv57Format INSTANCE = new RiscvSv57Format();

    private RiscvSv57Format() {
        super("riscv-sv57", 5, true);
    }
}
