package dev.vcmm.spi;

import java.util.List;

/**
 * The process's own address space, for HOST VCMs: reserve a range with no access, map pieces of a
 * {@link PhysicalMemory} into it (the very pages the simulated devices read and write), take them away
 * again, release the range. Found by the core with {@link java.util.ServiceLoader} (the available one with
 * the highest {@link #priority()} wins), like {@link MemoryBackend}; the ffm backend provides one on Linux
 * ({@code mmap(2)} of the memfd that holds the physical memory).
 *
 * <p><b>Thread-safety:</b> implementations are thread-safe; calls on disjoint ranges run in parallel. The
 * core never maps or unmaps one range from two threads at once.
 *
 * <p>All addresses and lengths are multiples of {@link #pageSize()}; the core checks this before calling.
 */
public interface HostMapper {

    /** Pages may be read. */
    int PROT_READ = 1;
    /** Pages may be written. */
    int PROT_WRITE = 2;
    /** Pages may be executed. */
    int PROT_EXEC = 4;

    /**
     * A physically contiguous run of a mapping.
     *
     * @param offset byte offset of the run from the mapping's first byte
     * @param pa     physical address of its first byte
     * @param length bytes
     */
    record Run(long offset, long pa, long length) {
    }

    /** {@return a short name, e.g. {@code mmap}} */
    String name();

    /** {@return the preference among available mappers; the highest wins} */
    int priority();

    /** {@return {@code null} if this mapper works here, else why not (e.g. "no mmap on Windows")} */
    String unavailableReason();

    /** {@return the host's page size in bytes (4096 on x86-64 Linux), queried from the system} */
    long pageSize();

    /**
     * Checks that pages of {@code memory} can be mapped into the process.
     *
     * @param memory the memory whose pages would be mapped
     * @throws IllegalArgumentException saying why not (e.g. the memory is a Java heap array, or a file
     *                                  whose descriptor is gone)
     */
    void checkMappable(PhysicalMemory memory);

    /**
     * Reserves {@code length} bytes of address space with no access and no memory committed.
     *
     * @param length    bytes, a positive multiple of {@link #pageSize()}
     * @param alignment a power of two, at least {@link #pageSize()}
     * @return the address of the first byte, aligned to {@code alignment}
     * @throws java.io.UncheckedIOException if the system refuses
     */
    long reserve(long length, long alignment);

    /**
     * Maps runs of {@code memory} over the reserved range {@code [address, address + length)}, which has
     * no access now; the runs cover it exactly, in order.
     *
     * @param address first byte of the range, page-aligned, inside a range from {@link #reserve}
     * @param length  bytes, a multiple of {@link #pageSize()}
     * @param prot    a combination of {@link #PROT_READ}, {@link #PROT_WRITE}, {@link #PROT_EXEC}
     * @param memory  the memory the runs are in
     * @param runs    the physical runs to map, one after the other from {@code address}
     * @return the mapping; closing it returns the range to no access
     * @throws IllegalArgumentException     if {@code memory} is not mappable
     * @throws java.io.UncheckedIOException if the system refuses; the range has no access again
     */
    HostMapping map(long address, long length, int prot, PhysicalMemory memory, List<Run> runs);

    /**
     * Gives a reserved range back to the system. Any mapping inside it must be closed first.
     *
     * @param address the address {@link #reserve} returned
     * @param length  the length it was reserved with
     * @throws java.io.UncheckedIOException if the system refuses
     */
    void release(long address, long length);
}
