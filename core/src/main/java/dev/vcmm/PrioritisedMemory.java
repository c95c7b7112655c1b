package dev.vcmm;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * A memory type backed by an ordered list of pools (the RFC's {@code memtype_t}, "a set of memories that can back a
 * reservation"): on-chip SRAM first, then DDR, say. An allocation is tried in each pool in order and comes from the
 * first that can hold all of it; it falls back to the next pool when one is out of memory. All or nothing across
 * them: a pool that fails has given back what it took (as {@link MemoryType#physAlloc} always does), and if every
 * pool fails nothing is held anywhere and the exception lists each pool's answer.
 *
 * <p>An allocation lies in one pool, never split across two: a {@link PhysMem} is of one memory type (its chunks are
 * freed to that type's allocator, found on the bus by that type's range, zeroed by that type's memory). The original
 * Qualcomm allocator could mix chunks of several pools in one allocation; here the same effect takes one allocation
 * per pool.
 *
 * <p><b>Thread-safety:</b> immutable; {@link #physAlloc} is as concurrent as the pools' own {@code physAlloc}. A pool
 * that another thread empties between two calls simply makes the next call fall through to the next pool.
 */
public final class PrioritisedMemory {

    private final String name;
    private final List<MemoryType> pools;

    private PrioritisedMemory(String name, List<MemoryType> pools) {
        this.name = name;
        this.pools = pools;
    }

    /**
     * Makes a prioritised memory type.
     *
     * @param name  a name for messages
     * @param pools the pools in the order they are tried, at least one, no pool twice
     * @return the prioritised memory type
     * @throws IllegalArgumentException if there is no pool or a pool is named twice
     */
    public static PrioritisedMemory of(String name, MemoryType... pools) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(pools, "pools");
        if (pools.length == 0) {
            throw new IllegalArgumentException("prioritised memory " + name + " needs at least one pool");
        }
        Set<MemoryType> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        for (MemoryType m : pools) {
            if (!seen.add(Objects.requireNonNull(m, "pool"))) {
                throw new IllegalArgumentException("prioritised memory " + name + ": pool memoryType=" + m.name() + " is named twice");
            }
        }
        return new PrioritisedMemory(name, List.of(pools));
    }

    /** {@return its name} */
    public String name() {
        return name;
    }

    /** {@return the pools in the order they are tried} */
    public List<MemoryType> pools() {
        return pools;
    }

    /**
     * Allocates from the first pool that can hold the whole allocation.
     *
     * @param length  the length in bytes
     * @param policy  the chunk sizes
     * @param options contiguity and alignment
     * @return the allocation, from one pool ({@link PhysMem#memoryType()} says which)
     * @throws IllegalArgumentException if the request is bad for every pool (e.g. larger than each); nothing held
     * @throws VcmmOutOfMemoryException if no pool can hold it now; nothing held, each pool's answer suppressed
     * @throws IllegalStateException    if a pool is closed; nothing held
     */
    public PhysMem physAlloc(long length, ChunkPolicy policy, PhysAllocOptions options) {
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(options, "options");
        List<RuntimeException> answers = new ArrayList<>();
        boolean outOfMemory = false;
        for (MemoryType pool : pools) {
            try {
                return pool.physAlloc(length, policy, options);
            } catch (VcmmOutOfMemoryException e) {
                outOfMemory = true;
                answers.add(e);
            } catch (IllegalArgumentException e) {
                answers.add(e); // this pool can never hold it (too small, no usable chunk size); try the next
            }
        }
        RuntimeException failure = outOfMemory
            ? new VcmmOutOfMemoryException(name, length, 0, "prioritised memory " + name + ": no pool of " + names()
                + " can hold length=" + length + " now; nothing is held")
            : new IllegalArgumentException("prioritised memory " + name + ": no pool of " + names() + " can ever hold length="
                + length + " with policy=" + policy + " (" + options + ")");
        answers.forEach(failure::addSuppressed);
        throw failure;
    }

    /**
     * Allocates scattered, 4K-aligned memory from the first pool that can hold it all.
     *
     * @param length the length in bytes
     * @param policy the chunk sizes
     * @return the allocation
     * @see #physAlloc(long, ChunkPolicy, PhysAllocOptions)
     */
    public PhysMem physAlloc(long length, ChunkPolicy policy) {
        return physAlloc(length, policy, PhysAllocOptions.DEFAULT);
    }

    private List<String> names() {
        return pools.stream().map(MemoryType::name).toList();
    }

    @Override
    public String toString() {
        return "PrioritisedMemory{" + name + " " + names() + '}';
    }
}
