package dev.vcmm;

import dev.vcmm.PhysMem.Chunk;
import dev.vcmm.spi.AllocatorStats;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Objects;
import java.util.ServiceLoader;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A memory target: a pool of simulated physical memory {@code [base, base + size)} with its own block
 * allocator and attributes (e.g. {@code ddr}, {@code sram}, a {@linkplain #isSecure() secure} carve-out). Physical allocations ({@link PhysMem}) are taken from it in chunks chosen by a
 * {@link ChunkPolicy}.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #physAlloc physAlloc}, {@link #physFree physFree} and
 * {@link #stats()} may run concurrently from any number of threads and take no lock of their own: they
 * are exactly as concurrent as the backend's {@link BlockAllocator} (lock-free with vcmm-ffm-backend).
 * {@link #close()} is idempotent and atomic, but operations still running on other threads when it is
 * called may fail with an {@link IllegalStateException}; close a memory type only when its users are
 * done.
 *
 * <p>The memory type owns the {@link PhysicalMemory} and {@link BlockAllocator} it opened through a
 * {@link MemoryBackend}, and closes both in {@link #close()}. Without an explicit
 * {@link Builder#backend(MemoryBackend) backend}, the one of highest priority found by
 * {@link ServiceLoader} is used: put {@code dev.vcmm:vcmm-ffm-backend} on the class path.
 *
 * <pre>{@code
 * try (MemoryType ddr = MemoryType.builder("ddr").base(0x8000_0000L).size(1L << 30).build()) {
 *     PhysMem frame = ddr.physAlloc(8_294_400, ChunkPolicy.VCMM);   // 7x1M + 14x64K + 9x4K
 *     long pa = frame.physicalAddress(4096);                       // where byte 4096 lives
 *     frame.free();
 * }
 * }</pre>
 */
public final class MemoryType implements AutoCloseable {

    /** The default blocks per small order in each thread's allocator cache (see {@link Builder#threadCacheCapacity}). */
    public static final int DEFAULT_THREAD_CACHE_CAPACITY = 64;

    private final MemorySpec spec;
    private final Set<MemoryAttribute> attributes;
    private final String backendName;
    private final PhysicalMemory memory;
    private final BlockAllocator allocator;
    private final boolean zeroOnHandoff;
    private final AtomicBoolean closed = new AtomicBoolean();

    private MemoryType(MemorySpec spec, Set<MemoryAttribute> attributes, String backendName,
                       PhysicalMemory memory, BlockAllocator allocator, boolean zeroOnHandoff) {
        this.spec = spec;
        this.attributes = attributes;
        this.backendName = backendName;
        this.memory = memory;
        this.allocator = allocator;
        this.zeroOnHandoff = zeroOnHandoff;
    }

    /**
     * Starts a builder.
     *
     * @param name a short, non-blank name for messages, e.g. {@code ddr}
     * @return a new builder
     */
    public static Builder builder(String name) {
        return new Builder(Objects.requireNonNull(name, "name"));
    }

    /** {@return the name.} */
    public String name() {
        return spec.name();
    }

    /** {@return the physical address of the first byte.} */
    public long base() {
        return spec.base();
    }

    /** {@return the number of bytes.} */
    public long size() {
        return spec.size();
    }

    /** {@return the attributes, an immutable set.} */
    Set<MemoryAttribute> attributes() {
        return attributes;
    }

    /** {@return {@code true} if the memory is secure: only secure reservations may be backed by it.} */
    public boolean isSecure() {
        return attributes.contains(MemoryAttribute.SECURE);
    }

    /** {@return the spec the backend opened the memory and the allocator with.} */
    public MemorySpec spec() {
        return spec;
    }

    /** {@return the name of the backend that supplies the memory and the allocator.} */
    public String backendName() {
        return backendName;
    }

    /**
     * {@return whether {@link #physAlloc physAlloc} zeroes the memory it hands out (the default), so that no owner
     *         reads a previous owner's bytes; see {@link Builder#zeroOnHandoff(boolean)}}
     */
    public boolean zeroesOnHandoff() {
        return zeroOnHandoff;
    }

    /** {@return the largest block order the allocator hands out (the spec's, possibly lowered to fit the pool).} */
    public int maxOrder() {
        return allocator.maxOrder();
    }

    /**
     * The simulated physical memory, for the core's page tables and for data access. It stays owned by
     * this memory type: do not close it.
     *
     * @return the physical memory
     * @throws IllegalStateException if this memory type is closed
     */
    public PhysicalMemory memory() {
        ensureOpen();
        return memory;
    }

    /**
     * The block allocator, for the core's own page-table pages and for tests. Blocks taken from it
     * directly are not {@link PhysMem}s and must be freed to it directly. It stays owned by this memory
     * type: do not close it.
     *
     * @return the block allocator
     * @throws IllegalStateException if this memory type is closed
     */
    public BlockAllocator allocator() {
        ensureOpen();
        return allocator;
    }

    /**
     * {@return the allocator's statistics}
     *
     * @throws IllegalStateException if this memory type is closed
     */
    public AllocatorStats stats() {
        ensureOpen();
        return allocator.stats();
    }

    /**
     * Allocates scattered, 4K-aligned physical memory; the same as
     * {@code physAlloc(length, policy, PhysAllocOptions.DEFAULT)}.
     *
     * @param length the length in bytes
     * @param policy the chunk policy
     * @return the allocation
     * @see #physAlloc(long, ChunkPolicy, PhysAllocOptions)
     */
    public PhysMem physAlloc(long length, ChunkPolicy policy) {
        return physAlloc(length, policy, PhysAllocOptions.DEFAULT);
    }

    /**
     * Allocates physical memory for a buffer of {@code length} bytes, all or nothing.
     *
     * <p>The length is rounded up to the smallest usable chunk of {@code policy}; a usable chunk is one
     * no larger than the allocator's largest block ({@link #maxOrder()}) and, for a scattered allocation,
     * no smaller than {@code options.alignment()}.
     * <ul>
     *   <li><b>Scattered</b> (the default): chunks are taken largest first, as many of each size as fit
     *   in what is left; when the allocator has no free block of a size, the next smaller size takes
     *   over (as the original VCMM did). A 17M + 64K + 4K buffer under {@link ChunkPolicy#VCMM} on an
     *   unfragmented pool gets 16M, 1M, 64K and 4K.</li>
     *   <li><b>Contiguous</b>: one free block of the smallest order covering the length and the
     *   alignment is taken, and its unused tail given back as smaller blocks (as Linux's
     *   {@code alloc_pages_exact} does); the result is one range, aligned to {@code options.alignment()},
     *   described as policy-size chunks. If another thread takes part of the tail's range while it is
     *   being trimmed, the allocation keeps a whole block instead and holds its tail until freed.</li>
     * </ul>
     *
     * <p><b>Zero on handoff:</b> unless the memory type was built with {@link Builder#zeroOnHandoff(boolean)
     * zeroOnHandoff(false)}, every byte of the chunks reads as zero when this returns, through every path (CPU
     * views, device DMA, HOST mappings): a new owner never reads a previous owner's bytes. The memory is zeroed here,
     * at allocation, not at free ({@link PhysicalMemory#zero}; docs/architecture.md says why and what it costs).
     *
     * @param length  bytes, positive and at most {@link #size()}
     * @param policy  the chunk sizes to use
     * @param options contiguity and alignment
     * @return the allocation, owned by the caller until {@link PhysMem#free()}
     * @throws IllegalArgumentException  for a bad length or a request no state of this memory type could
     *                                   satisfy (no usable chunk size, larger than the pool or than its
     *                                   largest block if contiguous); nothing is allocated
     * @throws VcmmOutOfMemoryException  if the free memory does not suffice now; whatever was taken has
     *                                   been given back
     * @throws IllegalStateException     if this memory type is closed
     */
    public PhysMem physAlloc(long length, ChunkPolicy policy, PhysAllocOptions options) {
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(options, "options");
        ensureOpen();
        if (length <= 0) {
            throw new IllegalArgumentException("length=" + length + " must be positive");
        }
        if (length > spec.size()) {
            throw new IllegalArgumentException("length=" + length + " exceeds the size=" + spec.size()
                + " of memoryType=" + name());
        }
        int maxOrder = allocator.maxOrder();
        int minOrder = options.contiguous() ? 0 : BlockAllocator.orderFor(options.alignment());
        int[] usable = usableOrders(policy, minOrder, maxOrder);
        if (usable.length == 0) {
            throw new IllegalArgumentException("policy=" + policy + " has no chunk size in ["
                + Sizes.format(BlockAllocator.orderSize(minOrder)) + ", " + Sizes.format(BlockAllocator.orderSize(maxOrder))
                + "] (alignment=" + Sizes.format(options.alignment()) + ", largest block of memoryType=" + name() + ")");
        }
        long unit = BlockAllocator.orderSize(usable[usable.length - 1]);
        long rounded = (length + unit - 1) & -unit; // cannot overflow: length <= size < 2^52
        if (rounded > spec.size()) {
            throw new IllegalArgumentException("length=" + length + " rounded to " + rounded + " exceeds the size="
                + spec.size() + " of memoryType=" + name());
        }
        PhysMem pm = options.contiguous()
            ? allocContiguous(length, rounded, policy, options, usable, maxOrder)
            : allocScattered(length, rounded, policy, options, usable);
        return zeroOnHandoff ? zeroed(pm) : pm;
    }

    /**
     * Wraps the physical range {@code [pa, pa + length)} of this memory type as an allocation (the RFC's
     * {@code vcm_map_phys_addr}): a firmware carve-out or a frame buffer at a fixed address. Exactly the blocks that
     * tile the range are taken, the largest aligned ones first; if any of them is not free, nothing is taken. The
     * memory keeps its contents (it is not zeroed: naming the address is asking for what is there).
     *
     * @param pa     the physical address of the first byte, a multiple of 4096
     * @param length the length in bytes, a positive multiple of 4096
     * @return the allocation, contiguous, owned by the caller until {@link PhysMem#free()}
     * @throws IllegalArgumentException if misaligned or not inside this memory type
     * @throws VcmmBusyException        if part of the range is allocated (or held in a thread's allocator cache)
     * @throws IllegalStateException    if this memory type is closed
     */
    public PhysMem physAllocAt(long pa, long length) {
        ensureOpen();
        return PhysWrap.wrap(this, pa, length);
    }

    /**
     * Zeroes what a new allocation's owner can reach, its chunks, one {@link PhysicalMemory#zero} per run of adjacent
     * chunks. Zeroing at allocation rather than at free covers every way a block reaches the pool (physFree, the last
     * unback of an orphan, the page-table allocator's own frees, a rollback) and any store that landed in a block
     * after it was freed.
     * If zeroing fails (the memory was closed under us) the blocks go back and the caller gets the failure.
     */
    private PhysMem zeroed(PhysMem pm) {
        try {
            long runStart = pm.chunkPa(0);
            long runEnd = runStart;
            for (int i = 0, n = pm.chunkCount(); i < n; i++) {
                long pa = pm.chunkPa(i);
                if (pa != runEnd) {
                    memory.zero(runStart, runEnd - runStart);
                    runStart = pa;
                }
                runEnd = pa + BlockAllocator.orderSize(pm.chunkOrder(i));
            }
            memory.zero(runStart, runEnd - runStart);
            return pm;
        } catch (RuntimeException | Error e) {
            pm.markFreed();
            addSuppressed(e, giveBack(pm));
            throw e;
        }
    }

    /**
     * Gives a physical allocation's chunks back to the allocator.
     *
     * @param pm the physical allocation
     * @throws IllegalArgumentException if {@code pm} came from another memory type (a foreign handle)
     * @throws IllegalStateException    if {@code pm} was already freed, still backs a reservation, or this memory
     *                                  type is closed
     */
    public void physFree(PhysMem pm) {
        Objects.requireNonNull(pm, "pm");
        ensureOpen();
        if (pm.memoryType() != this) {
            throw new IllegalArgumentException("foreign handle: " + pm + " belongs to memoryType="
                + pm.memoryType().name() + ", not to memoryType=" + name());
        }
        pm.markFreed();
        ReverseMap.forget(pm);
        RuntimeException failure = giveBack(pm);
        if (failure != null) {
            throw failure;
        }
    }

    /** {@return {@code true} once {@link #close()} has been called.} */
    public boolean isClosed() {
        return closed.get();
    }

    /**
     * Closes the memory, then the allocator. Idempotent once it succeeded. Allocations still live become invalid;
     * every later operation on this memory type fails with an {@link IllegalStateException} naming it. Retryable:
     * if the memory refuses to close (e.g. a native call still holds a view of it), the exception propagates, the
     * memory type stays open and unchanged, and a later close may succeed. Must not race with other calls.
     */
    @Override
    public synchronized void close() {
        if (closed.get()) {
            return;
        }
        memory.close(); // the step that may refuse: first, so that a refusal leaves everything open
        allocator.close();
        closed.set(true);
    }

    @Override
    public String toString() {
        return "MemoryType[" + name() + " " + Sizes.format(size()) + " at " + Sizes.hex(base())
            + (attributes.isEmpty() ? "" : " " + attributes) + ", backend=" + backendName
            + (zeroOnHandoff ? "" : ", not zeroed on handoff")
            + (closed.get() ? ", closed]" : "]");
    }

    /**
     * One {@link BlockAllocator#alloc} per chunk: with the shipped allocator's thread caches that is a pop from the
     * calling thread's cache, not a search. {@link BlockAllocator#allocBulk} is deliberately not used here: on an
     * uncached buddy it hands out the pieces of one larger block, so a {@link ChunkPolicy#PAGES_4K} buffer would come
     * back physically contiguous and map as large leaves, which is not what that policy promises (and what the demo's
     * policy comparison measures).
     */
    private PhysMem allocScattered(long length, long rounded, ChunkPolicy policy, PhysAllocOptions options, int[] usable) {
        // packed pa | order, sized for the largest chunks (a fallback to smaller ones grows it): no Chunk, no list
        long[] taken = new long[(int) Math.clamp(rounded >>> (BlockAllocator.PAGE_SHIFT + usable[0]), 1, 1024)];
        int n = 0;
        long remaining = rounded;
        try {
            for (int order : usable) {
                long chunkSize = BlockAllocator.orderSize(order);
                while (remaining >= chunkSize) {
                    long pa = allocator.alloc(order);
                    if (pa == BlockAllocator.NONE) {
                        break; // fall back to the next smaller chunk size
                    }
                    if (n == taken.length) {
                        taken = Arrays.copyOf(taken, n * 2);
                    }
                    taken[n++] = pa | order;
                    remaining -= chunkSize;
                }
            }
        } catch (RuntimeException | Error e) {
            addSuppressed(e, giveBack(taken, n));
            throw e;
        }
        if (remaining != 0) {
            long obtained = rounded - remaining;
            addSuppressed(null, giveBack(taken, n));
            throw outOfMemory(length, rounded, policy, options, obtained,
                "in " + n + " chunks before no chunk of " + Sizes.format(BlockAllocator.orderSize(usable[usable.length - 1]))
                    + " or larger was free");
        }
        return new PhysMem(this, length, policy, options, n == taken.length ? taken : Arrays.copyOf(taken, n), null);
    }

    /** Frees the first {@code n} packed chunks ({@code pa | order}) in reverse order. @return the first failure, or null */
    private RuntimeException giveBack(long[] packed, int n) {
        RuntimeException failure = null;
        for (int i = n - 1; i >= 0; i--) {
            failure = free(packed[i] & -BlockAllocator.PAGE_SIZE, (int) (packed[i] & (BlockAllocator.PAGE_SIZE - 1)), failure);
        }
        return failure;
    }

    /** Frees one block, carrying on past a failure. @return {@code failure}, or this free's if it is the first */
    private RuntimeException free(long pa, int order, RuntimeException failure) {
        try {
            allocator.free(pa, order);
        } catch (RuntimeException e) {
            if (failure == null) {
                return e;
            }
            failure.addSuppressed(e);
        }
        return failure;
    }

    private PhysMem allocContiguous(long length, long rounded, ChunkPolicy policy, PhysAllocOptions options,
                                    int[] usable, int maxOrder) {
        int blockOrder = BlockAllocator.orderFor(Math.max(rounded, options.alignment()));
        if (blockOrder > maxOrder) {
            throw new IllegalArgumentException("length=" + length + " contiguous with alignment=" + options.alignment()
                + " needs a block of " + Sizes.format(BlockAllocator.orderSize(blockOrder)) + " but the largest block of memoryType="
                + name() + " is " + Sizes.format(BlockAllocator.orderSize(maxOrder)) + " (maxOrder=" + maxOrder + ")");
        }
        long block = allocator.alloc(blockOrder);
        if (block == BlockAllocator.NONE) {
            throw outOfMemory(length, rounded, policy, options, 0,
                "no free block of " + Sizes.format(BlockAllocator.orderSize(blockOrder)));
        }
        if (rounded == BlockAllocator.orderSize(blockOrder)) {
            return new PhysMem(this, length, policy, options, layout(block, rounded, usable), List.of(new Chunk(block, blockOrder)));
        }
        // Trim, like alloc_pages_exact: give the whole block back and take its head again as the largest
        // aligned blocks (the set bits of rounded), so the tail stays free and coalesces.
        List<Chunk> head = new ArrayList<>();
        boolean trimmed = true;
        try {
            allocator.free(block, blockOrder);
            long offset = 0;
            for (int order = blockOrder - 1; order >= 0 && trimmed; order--) {
                long bit = BlockAllocator.orderSize(order);
                if ((rounded & bit) != 0) {
                    if (allocator.allocAt(block + offset, order)) {
                        head.add(new Chunk(block + offset, order));
                        offset += bit;
                    } else {
                        trimmed = false; // another thread took part of the range (or a thread cache holds it)
                    }
                }
            }
        } catch (RuntimeException | Error e) {
            addSuppressed(e, giveBack(head));
            throw e;
        }
        if (trimmed) {
            return new PhysMem(this, length, policy, options, layout(block, rounded, usable), head);
        }
        addSuppressed(null, giveBack(head));
        long whole = allocator.alloc(blockOrder);
        if (whole == BlockAllocator.NONE) {
            throw outOfMemory(length, rounded, policy, options, 0,
                "lost the free block of " + Sizes.format(BlockAllocator.orderSize(blockOrder)) + " to another thread");
        }
        return new PhysMem(this, length, policy, options, layout(whole, rounded, usable), List.of(new Chunk(whole, blockOrder)));
    }

    /** Describes {@code [start, start + length)} as policy chunks, largest first; {@code start} is aligned to all of them. */
    private static List<Chunk> layout(long start, long length, int[] usable) {
        List<Chunk> chunks = new ArrayList<>();
        long offset = 0;
        for (int order : usable) {
            long chunkSize = BlockAllocator.orderSize(order);
            while (length - offset >= chunkSize) {
                chunks.add(new Chunk(start + offset, order));
                offset += chunkSize;
            }
        }
        return chunks;
    }

    private int[] usableOrders(ChunkPolicy policy, int minOrder, int maxOrder) {
        Usable u = lastUsable;
        if (u != null && u.policy == policy && u.minOrder == minOrder && u.maxOrder == maxOrder) {
            return u.orders; // never written to
        }
        int[] orders = Arrays.stream(policy.orders()).filter(o -> o >= minOrder && o <= maxOrder).toArray();
        lastUsable = new Usable(policy, minOrder, maxOrder, orders);
        return orders;
    }

    /** The chunk orders of the last policy asked for, between an order range (a one-entry memo of physAlloc). */
    private record Usable(ChunkPolicy policy, int minOrder, int maxOrder, int[] orders) {
    }

    /** The memo of {@link #usableOrders}: one immutable record, replaced whole (a racy but safe cache). */
    private volatile Usable lastUsable;

    /** Gives back the blocks of an allocation already marked freed (an orphan whose last backing went). */
    void giveBackFreed(PhysMem pm) {
        ReverseMap.forget(pm);
        if (!closed.get()) {
            RuntimeException failure = giveBack(pm);
            if (failure != null) {
                throw failure;
            }
        }
    }

    /** Frees what the allocator handed out for {@code pm}, in reverse order. @return the first failure, or null */
    private RuntimeException giveBack(PhysMem pm) {
        return pm.blocksAreChunks() ? giveBack(pm.packedChunks(), pm.chunkCount()) : giveBack(pm.blocks());
    }

    /** Frees {@code blocks} in reverse order, carrying on past failures. @return the first failure, or null. */
    private RuntimeException giveBack(List<Chunk> blocks) {
        RuntimeException failure = null;
        for (int i = blocks.size() - 1; i >= 0; i--) {
            failure = free(blocks.get(i).pa(), blocks.get(i).order(), failure);
        }
        return failure;
    }

    private static void addSuppressed(Throwable primary, RuntimeException rollbackFailure) {
        if (rollbackFailure == null) {
            return;
        }
        if (primary == null) {
            throw new IllegalStateException("rollback of a failed allocation failed", rollbackFailure);
        }
        primary.addSuppressed(rollbackFailure);
    }

    private VcmmOutOfMemoryException outOfMemory(long length, long rounded, ChunkPolicy policy, PhysAllocOptions options,
                                                 long obtained, String why) {
        AllocatorStats s = allocator.stats();
        return new VcmmOutOfMemoryException(name(), length, obtained,
            "memoryType=" + name() + ": cannot allocate length=" + length + " (rounded=" + rounded + ") with policy="
                + policy + " (" + options + "): obtained=" + obtained + " bytes " + why
                + "; all given back; allocator free=" + s.freeBytes() + " cached=" + s.cachedBytes()
                + " largestFreeBlock=" + s.largestFreeBlock());
    }

    private void ensureOpen() {
        if (closed.get()) {
            throw new IllegalStateException("memoryType=" + name() + " is already closed");
        }
    }

    /** @return the available backend of highest priority (ties go to the lower name), or null. */
    static MemoryBackend discoverBackend() {
        MemoryBackend best = null;
        for (MemoryBackend b : ServiceLoader.load(MemoryBackend.class)) {
            if (best == null || b.priority() > best.priority()
                || (b.priority() == best.priority() && b.name().compareTo(best.name()) < 0)) {
                best = b;
            }
        }
        return best;
    }

    /**
     * Builder of a {@link MemoryType}.
     *
     * <p><b>Thread-safety:</b> not thread-safe; use it from one thread.
     */
    public static final class Builder {

        private final String name;
        private long base;
        private long size;
        private boolean sizeSet;
        private final EnumSet<MemoryAttribute> attributes = EnumSet.noneOf(MemoryAttribute.class);
        private int maxOrder = MemorySpec.DEFAULT_MAX_ORDER;
        private int threadCacheCapacity = DEFAULT_THREAD_CACHE_CAPACITY;
        private MemoryBackend backend;
        private boolean zeroOnHandoff = true;

        private Builder(String name) {
            this.name = name;
        }

        /**
         * Sets the physical address of the first byte, a multiple of 4 KiB; default 0.
         *
         * @param base the physical address of the first byte
         * @return this builder
         */
        public Builder base(long base) {
            this.base = base;
            return this;
        }

        /**
         * Sets the number of bytes, a positive multiple of 4 KiB; required.
         *
         * @param size the size in bytes
         * @return this builder
         */
        public Builder size(long size) {
            this.size = size;
            this.sizeSet = true;
            return this;
        }

        /**
         * Makes the memory secure (only secure reservations may be backed by it) or not; default not secure.
         *
         * @param secure whether it is secure
         * @return this builder
         */
        public Builder secure(boolean secure) {
            if (secure) {
                attributes.add(MemoryAttribute.SECURE);
            } else {
                attributes.remove(MemoryAttribute.SECURE);
            }
            return this;
        }

        /**
         * Adds attributes.
         *
         * @param attributes the memory attributes
         * @return this builder
         */
        Builder attributes(MemoryAttribute... attributes) {
            for (MemoryAttribute a : attributes) {
                this.attributes.add(Objects.requireNonNull(a, "attribute"));
            }
            return this;
        }

        /**
         * Sets the largest block order handed out, default {@link MemorySpec#DEFAULT_MAX_ORDER} (1 GiB).
         *
         * @param maxOrder the largest block order
         * @return this builder
         */
        public Builder maxOrder(int maxOrder) {
            this.maxOrder = maxOrder;
            return this;
        }

        /**
         * Sets the blocks per small order kept in each thread's cache; default
         * {@value MemoryType#DEFAULT_THREAD_CACHE_CAPACITY}. With vcmm-ffm-backend all caches together hold at
         * most 1/32 of the pool, an allocation that would fail takes blocks back from every thread's cache
         * (idle ones included) first, and caches of ended threads come back on their own. 0 turns caches off:
         * every free then reaches the shared pool and coalesces at once, which keeps statistics exact at every
         * step (the cli's scenarios and alloc demo do that).
         *
         * @param threadCacheCapacity the blocks a thread may cache per order
         * @return this builder
         */
        public Builder threadCacheCapacity(int threadCacheCapacity) {
            this.threadCacheCapacity = threadCacheCapacity;
            return this;
        }

        /**
         * Whether {@link MemoryType#physAlloc physAlloc} zeroes the memory it hands to a new owner; default
         * {@code true}. With {@code false} an allocation holds whatever its previous owner left there (a DMA
         * buffer's last frame, a freed page table's entries): an opt-out for speed, for memory whose every byte
         * the new owner writes before anything reads it, and only where the owners trust each other. Page-table
         * memory is zeroed by the page tables themselves either way.
         *
         * @param zeroOnHandoff whether blocks are zeroed when handed out
         * @return this builder
         */
        public Builder zeroOnHandoff(boolean zeroOnHandoff) {
            this.zeroOnHandoff = zeroOnHandoff;
            return this;
        }

        /**
         * Uses {@code backend} instead of discovering one with {@link ServiceLoader}; for tests.
         *
         * @param backend the memory backend
         * @return this builder
         */
        public Builder backend(MemoryBackend backend) {
            this.backend = Objects.requireNonNull(backend, "backend");
            return this;
        }

        /**
         * Validates the settings (through {@link MemorySpec}) and opens the memory and the allocator.
         *
         * @return the new memory type, open
         * @throws IllegalArgumentException if a setting is invalid, naming it
         * @throws IllegalStateException    if the size was not set, or no backend is given or found
         */
        public MemoryType build() {
            if (!sizeSet) {
                throw new IllegalStateException("memoryType=" + name + ": size is not set; call size(bytes) before build()");
            }
            MemorySpec spec = new MemorySpec(name, base, size, attributes.contains(MemoryAttribute.SECURE), maxOrder,
                threadCacheCapacity);
            MemoryBackend b = backend != null ? backend : discoverBackend();
            if (b == null) {
                throw new IllegalStateException("memoryType=" + name + ": no dev.vcmm.spi.MemoryBackend found on the class path;"
                    + " add dev.vcmm:vcmm-ffm-backend to the class path, or pass a backend to MemoryType.Builder.backend()");
            }
            PhysicalMemory memory = b.openMemory(spec);
            BlockAllocator allocator;
            try {
                allocator = b.openAllocator(spec);
                if (memory.base() != spec.base() || memory.size() != spec.size()
                    || allocator.base() != spec.base() || allocator.size() != spec.size()) {
                    allocator.close();
                    throw new IllegalStateException("backend=" + b.name() + " opened memory [" + Sizes.hex(memory.base())
                        + ", +" + memory.size() + ") and allocator [" + Sizes.hex(allocator.base()) + ", +" + allocator.size()
                        + ") for spec base=" + Sizes.hex(spec.base()) + " size=" + spec.size());
                }
            } catch (RuntimeException | Error e) {
                memory.close();
                throw e;
            }
            Set<MemoryAttribute> attrs = Collections.unmodifiableSet(EnumSet.copyOf(attributes));
            return new MemoryType(spec, attrs, b.name(), memory, allocator, zeroOnHandoff);
        }
    }
}
