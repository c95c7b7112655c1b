package dev.vcmm.ffm;

import java.util.Objects;

/**
 * A leak: a segment or an arena of a {@link SegmentPool} became unreachable while it was live (never freed, never
 * closed) and the pool was open. A segment's memory is given back to the pool right after the report (no view of it
 * is left); an arena's once no view of its segments is left either, which may be later or never.
 *
 * <p><b>Thread-safety:</b> an immutable record.
 *
 * @param pool           the pool's name
 * @param kind           a segment or an arena
 * @param address        the segment's address; 0 for an arena
 * @param byteSize       the segment's size; for an arena, the bytes it held when it was dropped
 * @param allocationSite a throwable whose stack trace is where the segment was allocated or the arena opened
 */
public record LeakReport(String pool, Kind kind, long address, long byteSize, Throwable allocationSite) {

    /** What leaked. */
    public enum Kind {
        /** A segment of {@link SegmentPool#allocate}, {@link SegmentPool#allocateUninitialized} or {@link SegmentPool#tryAllocate}. */
        SEGMENT,
        /** An arena of {@link SegmentPool#newArena()} or {@link SegmentPool#newSharedArena()}. */
        ARENA
    }

    /** Checks the fields. */
    public LeakReport {
        Objects.requireNonNull(pool, "pool");
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(allocationSite, "allocationSite");
    }

    @Override
    public String toString() {
        return "LEAK: " + (kind == Kind.SEGMENT
            ? "a segment of pool '" + pool + "' (0x" + Long.toHexString(address) + ", " + byteSize + " bytes) became"
                + " unreachable without SegmentPool.free"
            : "an arena of pool '" + pool + "' (holding " + byteSize + " bytes) became unreachable without close")
            + (kind == Kind.SEGMENT ? "; its memory goes back to the pool"
                : "; its memory goes back to the pool once no view of its segments is left") + ". Allocated at:";
    }
}
