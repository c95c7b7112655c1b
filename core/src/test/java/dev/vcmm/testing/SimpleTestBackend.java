package dev.vcmm.testing;

import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;

/**
 * The test backend: {@link SimplePhysicalMemory} and {@link SimpleBuddyAllocator}. Registered with
 * {@link java.util.ServiceLoader} by the core's test resources at priority {@value #PRIORITY}, so that a
 * real backend wins wherever both are on the class path.
 *
 * <p><b>Thread-safety:</b> stateless, thread-safe.
 */
public final class SimpleTestBackend implements MemoryBackend {

    /** Lower than any real backend. */
    public static final int PRIORITY = -100;

    /** The name, {@value}. */
    public static final String NAME = "simple-test";

    /** Public no-argument constructor for {@link java.util.ServiceLoader}. */
    public SimpleTestBackend() {
    }

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public int priority() {
        return PRIORITY;
    }

    @Override
    public PhysicalMemory openMemory(MemorySpec spec) {
        return new SimplePhysicalMemory(spec.base(), spec.size());
    }

    @Override
    public BlockAllocator openAllocator(MemorySpec spec) {
        return new SimpleBuddyAllocator(spec);
    }
}
