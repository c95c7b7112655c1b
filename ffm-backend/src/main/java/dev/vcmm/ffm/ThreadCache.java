package dev.vcmm.ffm;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.ref.WeakReference;

/**
 * One thread's cache of free small blocks (a "magazine" per order, as Linux's per-CPU page lists and
 * Netty's thread caches keep): LIFO stacks of physical addresses, and the uncarved rest of a private
 * 2 MiB arena, so that a hot alloc/free pair touches no block word another thread's blocks share.
 *
 * <p><b>Thread-safety:</b> owned by one thread, stealable by any. Only the owner puts blocks in and
 * keeps the owner-only fields ({@link #tops}, {@link #ownerBytes}, {@link #credit}); any thread may take
 * blocks out, without waiting for the owner, because every slot and the arena word are single atomic
 * words:
 * <ul>
 *   <li>a slot holds a block's address or {@link #EMPTY}. The owner pushes with a release store into a
 *       slot at or above its top, which is {@link #EMPTY} (only the owner ever writes a non-empty value,
 *       and every taker leaves {@link #EMPTY}); the owner pops, and a thief steals, with an atomic
 *       exchange to {@link #EMPTY}: whoever gets the address owns the block, exactly one thread.</li>
 *   <li>the arena word holds the next address to carve, or {@link #EMPTY}; the arena ends at the next
 *       2 MiB boundary. The owner carves with a compare-and-set; a thief takes the whole rest with an
 *       exchange.</li>
 * </ul>
 * The owner learns of a theft when its exchange or compare-and-set finds {@link #EMPTY}; until then its
 * {@link #ownerBytes} overstate what is cached, and thieves add what they took to {@link #stolenBytes},
 * so {@link #cachedBytes()} ({@code ownerBytes - stolenBytes}) stays right for readers.
 *
 * <p>The cache does not keep its thread alive: it holds it weakly, so a registry of caches never keeps
 * dead (virtual) threads.
 */
final class ThreadCache {

    /** The value of an empty slot and of an arena word without an arena. */
    static final long EMPTY = -1;

    static final VarHandle SLOT = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle ARENA;
    private static final VarHandle OWNER_BYTES;
    private static final VarHandle STOLEN_BYTES;
    private static final VarHandle CREDIT;
    private static final VarHandle RECLAIMED;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            ARENA = l.findVarHandle(ThreadCache.class, "arena", long.class);
            OWNER_BYTES = l.findVarHandle(ThreadCache.class, "ownerBytes", long.class);
            STOLEN_BYTES = l.findVarHandle(ThreadCache.class, "stolenBytes", long.class);
            CREDIT = l.findVarHandle(ThreadCache.class, "credit", long.class);
            RECLAIMED = l.findVarHandle(ThreadCache.class, "reclaimed", boolean.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final WeakReference<Thread> owner;
    /** stacks[order][i]: a cached block's address or {@link #EMPTY}; accessed through {@link #SLOT}. */
    final long[][] stacks;
    /** tops[order]: slots at or above it are empty; below it they hold blocks unless stolen. Owner-only. */
    final int[] tops;
    /** capacities[order]: how many blocks of that order the cache holds at most. */
    final int[] capacities;

    @SuppressWarnings("unused") // through ARENA
    private long arena = EMPTY;
    /** Bytes in the stacks below the tops plus the arena rest, as the owner last saw them (release stores). */
    @SuppressWarnings("unused")
    private long ownerBytes;
    /** Bytes thieves took that the owner has not noticed yet (atomic adds). */
    @SuppressWarnings("unused")
    private long stolenBytes;
    /**
     * ops[order] counts the owner's pushes and pops of that order, ops[capacities.length] its arena changes,
     * each incremented before the change it counts: a failing search's proof that none happened meanwhile.
     */
    private final long[] ops;
    /** The owner's view of the arena word: what it last wrote there. Owner-only. */
    long arenaSeen = EMPTY;
    /** Bytes of the allocator's cache budget this cache holds; {@code ownerBytes <= credit}. */
    @SuppressWarnings("unused")
    private long credit;
    @SuppressWarnings("unused")
    private boolean reclaimed;

    ThreadCache(Thread owner, int[] capacities) {
        this.owner = new WeakReference<>(owner);
        this.capacities = capacities;
        this.stacks = new long[capacities.length][];
        for (int k = 0; k < capacities.length; k++) {
            stacks[k] = new long[capacities[k]];
            java.util.Arrays.fill(stacks[k], EMPTY);
        }
        this.tops = new int[capacities.length];
        this.ops = new long[capacities.length + 1];
    }

    /** {@return whether the owner has terminated (or been collected, which implies it terminated)} */
    boolean ownerDead() {
        Thread t = owner.get();
        return t == null || !t.isAlive();
    }

    /** {@return {@code true} for exactly one caller: the one that reclaims this cache of a dead thread} */
    boolean claimReclaim() {
        return RECLAIMED.compareAndSet(this, false, true);
    }

    // slots ----------------------------------------------------------------------------------------

    /** Owner only: puts {@code pa} into the empty slot {@code i} (release store: plain on x86). */
    void push(int order, int i, long pa) {
        SLOT.setRelease(stacks[order], i, pa);
    }

    /** Takes slot {@code i}: @return its block, now the caller's, or {@link #EMPTY} if someone took it first. */
    long take(int order, int i) {
        return (long) SLOT.getAndSet(stacks[order], i, EMPTY);
    }

    /** {@return slot {@code i} as last published (acquire load); a hint for thieves, never an ownership} */
    long peek(int order, int i) {
        return (long) SLOT.getAcquire(stacks[order], i);
    }

    // arena ----------------------------------------------------------------------------------------

    long arena() {
        return (long) ARENA.getAcquire(this);
    }

    /** Owner only: installs a fresh arena (release store); the word was {@link #EMPTY}. */
    void setArena(long next) {
        ARENA.setRelease(this, next);
    }

    /** Owner only: carves, moving the arena word from {@code expected} to {@code next}. */
    boolean casArena(long expected, long next) {
        return ARENA.compareAndSet(this, expected, next);
    }

    /** {@return the whole arena rest's first address, now the caller's, or {@link #EMPTY}} */
    long takeArena() {
        return (long) ARENA.getAndSet(this, EMPTY);
    }

    // accounting -----------------------------------------------------------------------------------

    /** Owner only: adds {@code delta} to the owner's view of its cached bytes (a release store). */
    void addOwnerBytes(long delta) {
        OWNER_BYTES.setRelease(this, (long) OWNER_BYTES.get(this) + delta);
    }

    /** Owner only. */
    long ownerBytes() {
        return (long) OWNER_BYTES.get(this);
    }

    /** A thief took {@code bytes}; the owner passes {@code -bytes} when it notices. */
    void addStolen(long bytes) {
        STOLEN_BYTES.getAndAdd(this, bytes);
    }

    /** Owner only: one more push, pop or arena change of {@code which} (release store, before the change). */
    void countOp(int which) {
        SLOT.setRelease(ops, which, (long) SLOT.get(ops, which) + 1);
    }

    /** {@return the operation count of {@code which} (acquire load)} */
    long ops(int which) {
        return (long) SLOT.getAcquire(ops, which);
    }

    long credit() {
        return (long) CREDIT.getAcquire(this);
    }

    /** Owner only, or the reclaimer of a dead owner's cache. */
    void setCredit(long bytes) {
        CREDIT.setRelease(this, bytes);
    }

    /**
     * @return the bytes this cache holds, as last published by its owner less what thieves took since; while
     * a theft is under way it may be off by the blocks being stolen, never below 0
     */
    long cachedBytes() {
        return Math.max(0, (long) OWNER_BYTES.getAcquire(this) - (long) STOLEN_BYTES.getAcquire(this));
    }
}
