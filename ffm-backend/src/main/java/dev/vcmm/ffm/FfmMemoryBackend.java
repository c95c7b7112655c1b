package dev.vcmm.ffm;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;

/**
 * The off-heap backend, {@code ffm}: physical memory in a {@link SegmentPhysicalMemory} (a sparse memfd
 * or temporary-file mapping) and blocks from a {@link LockFreeBuddyAllocator}. Registered for
 * {@link java.util.ServiceLoader} in {@code META-INF/services/dev.vcmm.spi.MemoryBackend}, with a high
 * {@link #priority()} so that it wins over a heap backend whenever it is on the class path.
 *
 * <p><b>Thread-safety:</b> stateless and thread-safe; each memory and allocator it opens belongs to the
 * caller, who closes it.
 */
public final class FfmMemoryBackend implements MemoryBackend {

    /** The name this backend reports. */
    public static final String NAME = "ffm";

    /** The priority this backend reports: above any heap or test backend. */
    public static final int PRIORITY = 100;

    /** For {@link java.util.ServiceLoader}. */
    public FfmMemoryBackend() {
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public int priority() {
        return PRIORITY;
    }

    /**
     * @return a {@link SegmentPhysicalMemory} for the spec's range, named after it
     * @throws IllegalArgumentException if the size is above {@link SegmentPhysicalMemory#MAX_SIZE}
     * @throws java.io.UncheckedIOException if the system refuses the file or the mapping
     */
    @Override
    public PhysicalMemory openMemory(MemorySpec spec) {
        return SegmentPhysicalMemory.open(spec);
    }

    /** {@return a {@link LockFreeBuddyAllocator} for the spec's range, order bound and thread-cache capacity} */
    @Override
    public BlockAllocator openAllocator(MemorySpec spec) {
        return LockFreeBuddyAllocator.create(spec);
    }

    @Override
    public String toString() {
        return "FfmMemoryBackend{name=" + NAME + ", priority=" + PRIORITY + "}";
    }
}
