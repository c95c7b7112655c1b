package dev.vcmm.bench;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.ffm.HostBuffer;
import dev.vcmm.ffm.HostBuffers;
import dev.vcmm.ffm.HostSegments;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * HOST VCMs as an allocator. Physical memory is a sparse memfd; a HOST reservation maps its chunks
 * with one {@code mmap(MAP_FIXED|MAP_SHARED)} per physically contiguous run, so the pool is fragmented first
 * (every other chunk-sized block held by a bystander) and every chunk is a run of its own: the worst case.
 * Single-threaded; average time per operation in microseconds.
 *
 * <h2>Subjects</h2>
 * <ul>
 *   <li>{@link #backUnback}: back a HOST reservation with a pre-allocated {@link PhysMem}, take its view, unback:
 *       one mmap per chunk, a shared arena made and closed (a thread handshake), one mmap back to PROT_NONE.</li>
 *   <li>{@link #hostAllocateClose}: {@link HostBuffers#allocate} + close: also physAlloc and free, a HOST VCM
 *       created and freed (mmap reserve, munmap).</li>
 *   <li>{@link #arenaAllocateClose}: the plain JDK way, {@code Arena.ofShared()} + {@code allocate(size)} + close:
 *       malloc, zeroing of every byte (so every page is touched), free, and the same arena handshake.</li>
 *   <li>{@link #nettyAllocateRelease}: Netty's {@code PooledByteBufAllocator(true).directBuffer(size)} +
 *       {@code release()}: above Netty's chunk size (4 MiB) this is an unpooled "huge" allocation each time.</li>
 *   <li>{@link #readView} against {@link #readPlain}: a sequential sum of longs over a HOST view and over an
 *       Arena segment of the same size, both already touched. It should be equal: the view is ordinary memory.</li>
 * </ul>
 * HOST memory is not zeroed between uses (it is physical memory: the last user's bytes stay), Arena memory is;
 * Netty's is not. Pages of the memfd stay resident once touched, so HOST buffers after the first pay no page
 * faults, while malloc may return large blocks to the system and fault them in again.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-Xmx2g"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class HostMapBenchmark {

    static final long MIB = 1L << 20;

    /** A VCMM over a fragmented 2 GiB memfd and one HOST reservation of {@code size}. */
    @State(Scope.Thread)
    public static class Host {
        @Param({"1M", "16M", "256M"})
        public String size;

        @Param({"64K", "2M"})
        public String chunk;

        long bytes;
        ChunkPolicy policy;
        Vcmm vcmm;
        MemoryType ddr;
        Vcm vcm;
        Reservation reservation;
        PhysMem memory;
        MemorySegment view;

        @Setup(Level.Trial)
        public void setUp() {
            bytes = parse(size);
            policy = ChunkPolicy.parse(chunk);
            long chunkBytes = parse(chunk);
            vcmm = Vcmm.builder().memoryType(MemoryType.builder("ddr").base(0x1_0000_0000L).size(2048 * MIB)).build();
            ddr = vcmm.memoryType("ddr");
            // fragment: hold every other chunk of the first 4 * size bytes, so no two chunks we (and hostAllocateClose) get are adjacent
            List<PhysMem> all = new ArrayList<>();
            for (long at = 0; at < 4 * bytes + 2 * chunkBytes; at += chunkBytes) {
                all.add(vcmm.physAlloc("ddr", chunkBytes, policy));
            }
            for (int i = 0; i < all.size(); i += 2) {
                all.get(i).free();
            }
            memory = vcmm.physAlloc("ddr", bytes, policy);
            if (memory.chunkCount() != Math.max(1, bytes / chunkBytes)) { // 1M of 2M chunks: one chunk, half used
                throw new IllegalStateException("expected " + Math.max(1, bytes / chunkBytes) + " chunks: " + memory);
            }
            vcm = vcmm.createHostVcm(2 * bytes);
            reservation = vcm.reserve(bytes, ReservationAttributes.RW, Math.min(bytes, 2 * MIB));
            // the view for readView: touched once, so reads measure memory, not page faults
            reservation.back(memory);
            view = HostSegments.segment(reservation);
            view.fill((byte) 1);
            reservation.unback();
        }

        @Setup(Level.Iteration)
        public void backForReads() {
            if (!reservation.isBacked()) {
                reservation.back(memory);
            }
            view = HostSegments.segment(reservation);
        }

        @TearDown(Level.Iteration)
        public void unbackAfterReads() {
            if (reservation.isBacked()) {
                reservation.unback();
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            vcmm.close();
        }
    }

    /** The baselines' state: the same sizes, no chunks. */
    @State(Scope.Thread)
    public static class Plain {
        @Param({"1M", "16M", "256M"})
        public String size;

        long bytes;
        Arena arena;
        MemorySegment segment;
        PooledByteBufAllocator netty;

        @Setup(Level.Trial)
        public void setUp() {
            bytes = parse(size);
            arena = Arena.ofShared();
            segment = arena.allocate(bytes, 4096);
            segment.fill((byte) 1);
            netty = new PooledByteBufAllocator(true);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            arena.close();
        }
    }

    static long parse(String s) {
        long n = Long.parseLong(s.substring(0, s.length() - 1));
        return switch (s.charAt(s.length() - 1)) {
            case 'K' -> n << 10;
            case 'M' -> n << 20;
            default -> throw new IllegalArgumentException(s);
        };
    }

    /** Back (mmap each chunk), take the view, unback (close the view's arena, PROT_NONE). */
    @Benchmark
    public long backUnback(Host h) {
        h.reservation.unback();
        h.reservation.back(h.memory);
        return HostSegments.segment(h.reservation).address();
    }

    /** The one-call allocator: physAlloc + HOST VCM + back + view, then close returns it all. */
    @Benchmark
    public long hostAllocateClose(Host h) {
        try (HostBuffer b = HostBuffers.allocate(h.vcmm, h.ddr, h.bytes, h.policy)) {
            return b.segment().address();
        }
    }

    /** The JDK's way: a shared arena, allocate (zeroed), close. */
    @Benchmark
    public long arenaAllocateClose(Plain p) {
        try (Arena a = Arena.ofShared()) {
            return a.allocate(p.bytes, 4096).address();
        }
    }

    /** Netty's pooled direct buffer of the same size, allocate + release. */
    @Benchmark
    public long nettyAllocateRelease(Plain p) {
        ByteBuf b = p.netty.directBuffer((int) p.bytes, (int) p.bytes);
        long c = b.capacity();
        b.release();
        return c;
    }

    /** Sequential sum of longs through the HOST view (scattered chunks, virtually contiguous). */
    @Benchmark
    public long readView(Host h) {
        return sum(h.view);
    }

    /** The same sum over a plain Arena segment: the physical limit of this loop. */
    @Benchmark
    public long readPlain(Plain p) {
        return sum(p.segment);
    }

    static long sum(MemorySegment s) {
        long acc = 0;
        long n = s.byteSize();
        for (long off = 0; off < n; off += Long.BYTES) {
            acc += s.get(ValueLayout.JAVA_LONG, off);
        }
        return acc;
    }
}
