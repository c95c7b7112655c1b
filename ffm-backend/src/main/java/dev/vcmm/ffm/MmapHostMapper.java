package dev.vcmm.ffm;

import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.HostMapping;
import dev.vcmm.spi.PhysicalMemory;

import java.util.List;

/**
 * The {@link HostMapper} of the ffm backend: HOST VCMs as real ranges of this process, with {@code mmap(2)}
 * through {@link Libc} downcalls. Registered for {@link java.util.ServiceLoader} in
 * {@code META-INF/services/dev.vcmm.spi.HostMapper}.
 *
 * <p><b>Thread-safety:</b> stateless apart from the cached page size; thread-safe. The kernel serialises
 * changes to the address space itself; callers keep ranges disjoint.
 *
 * <pre>
 *  reserve   mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)   then trim head and tail
 *  map       per run: mmap(addr + off, runLen, prot, MAP_SHARED|MAP_FIXED, memfd, pa - base)
 *  unmap     mmap(addr, len, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_FIXED)   (never a hole)
 *  release   munmap(addr, len)
 * </pre>
 * {@code MAP_FIXED} replaces whatever is in the range atomically, so a mapped or unmapped range is never a hole
 * where another {@code mmap} of the JVM could land. Only {@link SegmentPhysicalMemory} backed by a memfd can be
 * mapped: its {@link SegmentPhysicalMemory#fd()} is the file, and the simulator's own view maps the same pages,
 * so what the CPU stores the simulated devices read.
 */
public final class MmapHostMapper implements HostMapper {

    /** The name this mapper reports. */
    public static final String NAME = "mmap";

    private final long pretendPageSize;
    private volatile long pageSize;

    /** For {@link java.util.ServiceLoader}: the real page size. */
    public MmapHostMapper() {
        this(0);
    }

    /**
     * A mapper that treats {@code pretendPageSize} (a multiple of the real one) as the page size in its checks, so
     * tests on a 4 KiB host can see how a 16 KiB or 64 KiB host refuses small chunks; 0 for the real page size.
     */
    MmapHostMapper(long pretendPageSize) {
        this.pretendPageSize = pretendPageSize;
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public int priority() {
        return 100;
    }

    @Override
    public String unavailableReason() {
        return Libc.MMAP_UNAVAILABLE;
    }

    @Override
    public long pageSize() {
        long p = pageSize;
        if (p == 0) {
            p = Libc.pageSize();
            if (pretendPageSize != 0) {
                if (pretendPageSize % p != 0) {
                    throw new IllegalStateException("pretendPageSize=" + pretendPageSize + " is not a multiple of the page size " + p);
                }
                p = pretendPageSize;
            }
            pageSize = p; // benign race: every thread computes the same value
        }
        return p;
    }

    @Override
    public void checkMappable(PhysicalMemory memory) {
        memfd(memory);
    }

    private static int memfd(PhysicalMemory memory) {
        if (!(memory instanceof SegmentPhysicalMemory s)) {
            throw new IllegalArgumentException("physical memory " + memory + " cannot be mapped into the process: HOST"
                + " reservations need a memory type of the ffm backend backed by a memfd");
        }
        if (s.isClosed()) {
            throw new IllegalStateException("physical memory " + s + " is closed");
        }
        return s.fd().orElseThrow(() -> new IllegalArgumentException("physical memory " + s + " is a temporary file, not a"
            + " memfd, and cannot be mapped into the process: HOST reservations need memfd_create (Linux)"));
    }

    @Override
    public long reserve(long length, long alignment) {
        long page = Libc.pageSize();
        long over = length + (alignment > page ? alignment - page : 0);
        long at = Libc.mmap(0, over, Libc.PROT_NONE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        long aligned = (at + alignment - 1) & -alignment;
        if (aligned > at) {
            Libc.munmap(at, aligned - at);
        }
        long end = at + over;
        if (end > aligned + length) {
            Libc.munmap(aligned + length, end - (aligned + length));
        }
        return aligned;
    }

    @Override
    public HostMapping map(long address, long length, int prot, PhysicalMemory memory, List<Run> runs) {
        int fd = memfd(memory);
        long expected = 0;
        for (Run run : runs) {
            if (run.offset() != expected || run.length() <= 0 || run.pa() < memory.base()
                || run.pa() - memory.base() > memory.size() - run.length()) {
                throw new IllegalArgumentException("run " + run + " does not continue at offset " + expected + " inside " + memory);
            }
            expected += run.length();
        }
        if (expected != length) {
            throw new IllegalArgumentException("runs cover " + expected + " bytes, the range length=" + length);
        }
        try {
            for (Run run : runs) {
                Libc.mmap(address + run.offset(), run.length(), prot, Libc.MAP_SHARED | Libc.MAP_FIXED, fd, run.pa() - memory.base());
            }
        } catch (RuntimeException e) {
            try {
                noAccess(address, length);
            } catch (RuntimeException undo) {
                e.addSuppressed(undo);
            }
            throw e;
        }
        return new FfmHostMapping(this, address, length, prot);
    }

    /** Replaces {@code [address, address + length)} with a no-access anonymous mapping, leaving no hole. */
    void noAccess(long address, long length) {
        Libc.mmap(address, length, Libc.PROT_NONE,
            Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE | Libc.MAP_FIXED, -1, 0);
    }

    @Override
    public void release(long address, long length) {
        Libc.munmap(address, length);
    }

    @Override
    public String toString() {
        return "MmapHostMapper{" + (unavailableReason() == null ? "pageSize=" + pageSize() : "unavailable: " + unavailableReason()) + "}";
    }
}
