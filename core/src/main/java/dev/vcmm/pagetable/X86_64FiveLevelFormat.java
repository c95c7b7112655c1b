package dev.vcmm.pagetable;

/**
 * {@code x86-64-5level}: Intel 64 5-level paging (CR4.LA57=1, CR4.PAE=1, IA32_EFER.LME=1, IA32_EFER.NXE=1),
 * 57-bit canonical linear addresses, MAXPHYADDR 52; 4 KiB, 2 MiB and 1 GiB pages. The format of CPUs with
 * LA57 (Ice Lake server and later) and of Intel VT-d first-stage tables with 5-level paging.
 *
 * <p><b>Thread-safety:</b> immutable, a stateless codec.
 *
 * <p>Source: Intel SDM Vol. 3A, 4.5 "4-Level Paging and 5-Level Paging": 4.5 (a linear address is
 * canonical when bits 63:57 equal bit 56), 4.5 (the walk starts at the PML5 table named by CR3[51:12] and
 * indexes it with linear-address bits 56:48), Table 4-14 "Format of a PML5 Entry (PML5E) that References a
 * PML4 Table"; every other entry is as in 4-level paging ({@link X86_64Format}).
 *
 * <pre>
 * Levels: PML5 (level 0, VA[56:48]), PML4 (level 1, VA[47:39]), PDPT (level 2, VA[38:30]),
 *         PD (level 3, VA[29:21]), PT (level 4, VA[20:12])
 * Leaves: 1 GiB (PDPTE.PS=1, level 2), 2 MiB (PDE.PS=1, level 3), 4 KiB (PTE, level 4)
 *
 * PML5E (Table 4-14): the same layout as a PML4E
 *  63  62       52 51                             12 11   8  7   6  5   4   3   2   1  0
 * +--+-----------+----------------------------------+------+---+--+--+---+---+---+---+--+
 * |XD|  ignored  |    PML4 table address [51:12]    | ign. |PS0|ig|A |PCD|PWT|U/S|R/W|P |
 * +--+-----------+----------------------------------+------+---+--+--+---+---+---+---+--+
 *   PS (bit 7) is reserved (must be 0) in a PML5E and a PML4E; R/W, U/S and XD limit the whole walk (4.6)
 *
 * Canonical addresses: [0, 2^56) and [2^64 - 2^56, 2^64)
 * </pre>
 *
 * <p>The PDPTE, PDE and PTE formats, the memory-type encoding and the hierarchical rights are those of
 * {@link X86_64Format}.
 */
public final class X86_64FiveLevelFormat extends X86_64Format {

    /** The single instance. */
    public static final X86_64FiveLevelFormat INSTANCE = new X86_64FiveLevelFormat();

    private X86_64FiveLevelFormat() {
        super("x86-64-5level", 5);
    }
}
