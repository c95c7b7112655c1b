package dev.vcmm.ffm;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Threshold;

/**
 * JDK Flight Recorder events of a {@link SegmentPool}'s slow paths: a new large mapping, a trim, a decay pass, an
 * allocation that found no room. Each is created, begun and ended around its slow path only, and its fields are set
 * and committed only if {@link Event#shouldCommit()} (recording, enabled, above its threshold): when nothing records,
 * an event costs an allocation that escape analysis removes and two reads of a flag. The fast paths (slab objects,
 * buddy blocks, cached mappings) have none.
 *
 * <p>Names are {@code dev.vcmm.pool.*}; thresholds are defaults that a recording's settings override, e.g.
 * {@code jfr configure} or {@code recording.enable("dev.vcmm.pool.Decay").withThreshold(Duration.ZERO)}.
 *
 * <p><b>Thread-safety:</b> an event object belongs to the thread that made it, as JFR requires.
 */
final class PoolEvents {

    private PoolEvents() {
    }

    /** A large segment needed a new mapping: chunks taken from the buddy and mapped with {@code mmap} (no cache hit). */
    @Name("dev.vcmm.pool.Mapping")
    @Label("Pool Large Mapping")
    @Category({"vcmm", "Segment Pool"})
    @Description("A large segment found no cached mapping of its chunk count: chunks were taken and mapped")
    @Threshold("0 ms")
    @StackTrace(true)
    static final class Mapping extends Event {
        @Label("Pool")
        String pool;
        @Label("Bytes")
        @DataAmount
        long bytes;
        @Label("Chunks")
        int chunks;
        @Label("Runs")
        @Description("Physically contiguous runs mapped: one mmap each")
        int runs;
    }

    /** {@link SegmentPool#trim()}. */
    @Name("dev.vcmm.pool.Trim")
    @Label("Pool Trim")
    @Category({"vcmm", "Segment Pool"})
    @Description("Cached mappings released and free memory punched out of the memfd")
    @Threshold("0 ms")
    @StackTrace(true)
    static final class Trim extends Event {
        @Label("Pool")
        String pool;
        @Label("Punched")
        @DataAmount
        long punchedBytes;
        @Label("Mappings Released")
        int releasedMappings;
    }

    /** A decay pass (run by an operation's clock check or the decay thread). */
    @Name("dev.vcmm.pool.Decay")
    @Label("Pool Decay Pass")
    @Category({"vcmm", "Segment Pool"})
    @Description("Memory free for the decay time punched out of the memfd")
    @Threshold("1 ms")
    @StackTrace(false)
    static final class Decay extends Event {
        @Label("Pool")
        String pool;
        @Label("Punched")
        @DataAmount
        long punchedBytes;
    }

    /** An allocation found no room ({@code tryAllocate}'s null, {@code allocate}'s {@link OutOfMemoryError}). */
    @Name("dev.vcmm.pool.OutOfMemory")
    @Label("Pool Out Of Memory")
    @Category({"vcmm", "Segment Pool"})
    @Description("An allocation found no room in the pool")
    @StackTrace(true)
    static final class OutOfMemory extends Event {
        @Label("Pool")
        String pool;
        @Label("Requested")
        @DataAmount
        long requestedBytes;
        @Label("Alignment")
        long alignment;
        @Label("Allocated")
        @Description("Bytes of live segments when it failed")
        @DataAmount
        long allocatedBytes;
        @Label("Capacity")
        @DataAmount
        long capacity;
    }
}
