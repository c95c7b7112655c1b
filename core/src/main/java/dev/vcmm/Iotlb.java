package dev.vcmm;

import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;

import java.util.Arrays;
import java.util.Objects;

/**
 * A model of a device's IOTLB (an SMMU's TLB, or a CPU's): a set-associative cache of translations, each
 * entry covering a whole leaf of whatever size the walk found, {@code [vaBase, vaBase + size) -> paBase},
 * with the leaf's effective permissions.
 *
 * <p><b>Thread-safety:</b> thread-safe. Every method synchronizes on the IOTLB (one lock per device, held
 * for a lookup, an insert or an invalidation, never during a walk, a copy or a fault handler). Fills are
 * guarded by a {@linkplain #generation() generation} that every invalidation bumps: a walker reads the
 * generation before it reads the device's tables and {@linkplain #insert(WalkResult.Translation, long)
 * inserts} its result only if no invalidation happened meanwhile, so a walk that raced with an unback or a
 * deactivate can never leave a stale entry behind (the walk's own in-flight access is the usual hardware
 * race and is not prevented).
 *
 * <p><b>PASID tags:</b> every entry is tagged with the PASID of the address space it translates (0 for the
 * default association), as an SMMUv3 TLB tags entries with ASID/VMID and a VT-d IOTLB with PASID/domain: a lookup
 * matches only entries of its own PASID, and {@link #invalidatePasid(int)} or a range invalidation of one PASID
 * leaves the entries of every other PASID in place. The generation is one per IOTLB (any invalidation refuses
 * every fill in flight, whatever its PASID: a refused fill is only a missed cache fill).
 *
 * <p>Geometry: {@code entries = sets x ways}, {@code sets} a power of two. An entry of leaf size {@code 2^s}
 * for input address {@code va} lives in set {@code (va >>> s) & (sets - 1)}, as a TLB indexed by the bits
 * just above the page offset would place it; replacement is LRU within the set. A lookup probes once per
 * distinct leaf size of the format, smallest first, and counts one hit or one miss.
 * <pre>
 *   va:  | tag ........ | set index (log2 sets bits) | offset in leaf (s bits) |
 *                                                     ^ s = log2(leaf size), probed per size
 * </pre>
 */
final class Iotlb {

    /**
     * One cached translation: a whole leaf.
     *
     * <p><b>Thread-safety:</b> immutable.
     *
     * @param vaBase     the first input address of the leaf (aligned to {@code size})
     * @param size       the leaf size in bytes
     * @param paBase     the physical address of the leaf's first byte
     * @param level      the table level of the leaf (0 for one-to-one "translations")
     * @param attributes the effective permissions the walk found (table limits applied)
     */
    public record Entry(long vaBase, long size, long paBase, int level, Attributes attributes) {

        /** @return whether the entry translates {@code va} */
        public boolean covers(long va) {
            return Long.compareUnsigned(va - vaBase, size) < 0;
        }

        /** @return the physical address of {@code va}, which the entry must cover */
        public long pa(long va) {
            return paBase + (va - vaBase);
        }

        /** @return the bytes from {@code va} to the end of the leaf */
        public long remaining(long va) {
            return size - (va - vaBase);
        }

        /** @return the entry a walk's translation describes */
        public static Entry of(WalkResult.Translation t) {
            long offset = t.va() & (t.leafSize() - 1);
            return new Entry(t.va() - offset, t.leafSize(), t.pa() - offset, t.level(), t.attributes());
        }

        @Override
        public String toString() {
            return String.format("0x%x+%s -> 0x%x (L%d, %s)", vaBase, LeafSize.humanSize(size), paBase, level, attributes);
        }
    }

    private final int ways;
    private final int setMask;
    /** log2 of each distinct leaf size, ascending. */
    private final int[] shifts;
    /** Set {@code s}, way {@code w} is slot {@code s * ways + w}; {@code null} is an invalid entry. */
    private final Entry[] slots;
    /** The PASID each slot's entry is tagged with, parallel to {@link #slots}. */
    private final int[] tags;
    /** LRU stamps, parallel to {@link #slots}: the tick of the last use. */
    private final long[] stamps;
    private long tick;
    /** Bumped by every invalidation, under the lock; read without it (volatile). */
    private volatile long generation;
    private long hits;
    private long misses;
    private long fills;
    private long staleFillsRefused;
    private long flushes;
    private long rangeInvalidations;
    private long pasidInvalidations;
    /** Slots holding an entry; lets an invalidation of an empty IOTLB skip the scan. Guarded by this. */
    private int occupied;
    private long invalidatedEntries;

    /**
     * Creates an empty IOTLB.
     *
     * @param entries   total entries, a multiple of {@code ways} such that {@code entries / ways} is a power of two
     * @param ways      associativity, at least 1 ({@code ways == entries} is fully associative)
     * @param leafSizes the leaf sizes it caches (powers of two >= 4096), in any order, duplicates allowed
     * @throws IllegalArgumentException for a bad geometry or leaf size
     */
    public Iotlb(int entries, int ways, long... leafSizes) {
        Objects.requireNonNull(leafSizes, "leafSizes");
        if (ways < 1 || entries < ways || entries % ways != 0 || Integer.bitCount(entries / ways) != 1) {
            throw new IllegalArgumentException("entries=" + entries + " ways=" + ways
                + " must give a power-of-two number of sets (entries a multiple of ways, ways >= 1)");
        }
        this.ways = ways;
        this.setMask = entries / ways - 1;
        this.shifts = Arrays.stream(leafSizes).peek(s -> {
            if (s < 4096 || Long.bitCount(s) != 1) {
                throw new IllegalArgumentException("leafSize=" + s + " must be a power of two >= 4096");
            }
        }).mapToInt(Long::numberOfTrailingZeros).distinct().sorted().toArray();
        if (shifts.length == 0) {
            throw new IllegalArgumentException("leafSizes must name at least one size");
        }
        this.slots = new Entry[entries];
        this.tags = new int[entries];
        this.stamps = new long[entries];
    }

    /** @return an IOTLB caching every leaf size of {@code format} */
    public static Iotlb forFormat(int entries, int ways, PageTableFormat format) {
        return new Iotlb(entries, ways, format.leafSizes().stream().mapToLong(LeafSize::size).toArray());
    }

    /** @return the capacity in entries */
    public int entries() {
        return slots.length;
    }

    /** @return the associativity */
    public int ways() {
        return ways;
    }

    /**
     * Looks {@code va} up, counting a hit or a miss; a hit becomes the most recently used entry of its set.
     *
     * @return the entry covering {@code va}, or {@code null}
     */
    public Entry lookup(long va) {
        return lookup(0, va);
    }

    /**
     * Looks {@code va} of address space {@code pasid} up, counting a hit or a miss; only entries tagged with
     * {@code pasid} match.
     *
     * @return the entry covering {@code va}, or {@code null}
     */
    public synchronized Entry lookup(int pasid, long va) {
        for (int shift : shifts) {
            int base = set(pasid, va, shift) * ways;
            long vaBase = va & (-1L << shift);
            for (int i = base; i < base + ways; i++) {
                Entry e = slots[i];
                if (e != null && e.vaBase == vaBase && e.size == 1L << shift && tags[i] == pasid) {
                    stamps[i] = ++tick;
                    hits++;
                    return e;
                }
            }
        }
        misses++;
        return null;
    }

    /**
     * @return the current generation: read it before a walk and pass it to {@link #insert(Entry, long)}. A volatile
     * read with no lock: a translation taken while the generation is unchanged is still valid.
     */
    public long generation() {
        return generation;
    }

    /** Inserts the translation a walk found. @see #insert(Entry, long) */
    public boolean insert(WalkResult.Translation t, long generation) {
        return insert(Entry.of(t), generation);
    }

    /**
     * Inserts {@code e}, replacing an entry for the same leaf, else an invalid way, else the least recently used
     * way of its set.
     *
     * @param generation what {@link #generation()} returned before the walk that produced {@code e}
     * @return {@code false} (and nothing changed) if an invalidation happened since {@code generation}: the walk
     *         may have read entries that are gone
     * @throws IllegalArgumentException if the entry's size is not one this IOTLB caches or it is misaligned
     */
    public boolean insert(Entry e, long generation) {
        return insert(0, e, generation);
    }

    /**
     * Inserts {@code e} tagged with {@code pasid}; as {@link #insert(Entry, long)}.
     *
     * @return {@code false} (and nothing changed) if an invalidation happened since {@code generation}
     */
    public synchronized boolean insert(int pasid, Entry e, long generation) {
        int shift = Long.numberOfTrailingZeros(e.size);
        if (Long.bitCount(e.size) != 1 || Arrays.binarySearch(shifts, shift) < 0 || (e.vaBase & (e.size - 1)) != 0) {
            throw new IllegalArgumentException("entry=" + e + " has a leaf size or alignment this IOTLB does not cache");
        }
        if (generation != this.generation) {
            staleFillsRefused++;
            return false;
        }
        int base = set(pasid, e.vaBase, shift) * ways;
        int victim = -1;
        for (int i = base; i < base + ways; i++) {
            Entry o = slots[i];
            if (o != null && o.vaBase == e.vaBase && o.size == e.size && tags[i] == pasid) {
                victim = i;
                break;
            }
            if (victim < 0 || (slots[victim] != null && (o == null || stamps[i] < stamps[victim]))) {
                victim = i;
            }
        }
        if (slots[victim] == null) {
            occupied++;
        }
        slots[victim] = e;
        tags[victim] = pasid;
        stamps[victim] = ++tick;
        fills++;
        return true;
    }

    /**
     * Drops every entry that overlaps {@code [address, address + length)} (a large leaf partly inside goes too),
     * and bumps the generation.
     *
     * @return the number of entries dropped
     */
    public int invalidate(long address, long length) {
        return invalidate(0, address, length);
    }

    /**
     * Drops every entry of {@code pasid} that overlaps {@code [address, address + length)} (a large leaf partly inside
     * goes too), and bumps the generation; entries of other PASIDs stay.
     *
     * @return the number of entries dropped
     */
    public synchronized int invalidate(int pasid, long address, long length) {
        generation++;
        rangeInvalidations++;
        if (occupied == 0) {
            return 0; // nothing cached: the generation bump alone refuses a fill racing with this invalidation
        }
        int dropped = 0;
        for (int i = 0; i < slots.length; i++) {
            Entry e = slots[i];
            if (e != null && tags[i] == pasid && (Long.compareUnsigned(e.vaBase - address, length) < 0 || e.covers(address))) {
                slots[i] = null;
                dropped++;
            }
        }
        occupied -= dropped;
        invalidatedEntries += dropped;
        return dropped;
    }

    /**
     * Drops every entry tagged with {@code pasid} and bumps the generation; entries of other PASIDs stay.
     *
     * @return the number of entries dropped
     */
    public synchronized int invalidatePasid(int pasid) {
        generation++;
        pasidInvalidations++;
        int dropped = 0;
        for (int i = 0; occupied > 0 && i < slots.length; i++) {
            if (slots[i] != null && tags[i] == pasid) {
                slots[i] = null;
                dropped++;
                occupied--;
            }
        }
        invalidatedEntries += dropped;
        return dropped;
    }

    /**
     * Drops every entry and bumps the generation.
     *
     * @return the number of entries dropped
     */
    public synchronized int flush() {
        generation++;
        flushes++;
        int dropped = 0;
        for (int i = 0; occupied > 0 && i < slots.length; i++) {
            if (slots[i] != null) {
                slots[i] = null;
                dropped++;
                occupied--;
            }
        }
        invalidatedEntries += dropped;
        return dropped;
    }

    /** @return a snapshot of the counters */
    public synchronized IotlbStats stats() {
        int valid = 0;
        for (Entry e : slots) {
            if (e != null) {
                valid++;
            }
        }
        return new IotlbStats(slots.length, ways, valid, hits, misses, fills, staleFillsRefused, flushes, rangeInvalidations,
            invalidatedEntries, pasidInvalidations);
    }

    /** @return the set of {@code va}'s leaf of size {@code 2^shift} in {@code pasid} (PASID 0: the plain index bits) */
    private int set(int pasid, long va, int shift) {
        return ((int) (va >>> shift) ^ (pasid * 0x9E3779B9)) & setMask;
    }

    @Override
    public String toString() {
        return "Iotlb{" + stats() + '}';
    }
}
