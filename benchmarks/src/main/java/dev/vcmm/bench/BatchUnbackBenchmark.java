package dev.vcmm.bench;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceStats;
import dev.vcmm.InvalidationBatch;
import dev.vcmm.IotlbStats;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import org.openjdk.jmh.annotations.AuxCounters;
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

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The batched variant of {@link BackUnbackBenchmark}'s unback: 100 backed 64 KiB reservations of one VCM, associated
 * with 3 or 100 devices (formats arm64-4k, armv7-short, x86-64 in turn), each device's IOTLB warm with an entry of
 * every reservation, are unbacked
 * <ul>
 *   <li>{@code oneByOne}: with 100 {@link Reservation#unback()} calls: each invalidates its range in every device's
 *       IOTLB and synchronizes every device (100 x devices IOTLB operations and syncs);</li>
 *   <li>{@code batched}: the same 100 calls inside one {@link InvalidationBatch}: at commit one merged range per device
 *       ({@code adjacent}: the reservations are back to back) or one whole-IOTLB flush per device ({@code gapped}: a
 *       page between reservations, so 100 ranges, more than {@link InvalidationBatch#MAX_RANGES}), and one sync per
 *       device.</li>
 * </ul>
 * Time is per 100 unbacks (ms); the back and the warm-up DMA of every invocation are outside the measurement
 * ({@code Level.Invocation} setup: the measured operation is long enough for it). The aux counters
 * {@code invalidations} (IOTLB range, PASID and whole invalidations over all devices) and {@code syncs} (burst-fence
 * syncs over all devices) are per 100 unbacks.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Thread)
public class BatchUnbackBenchmark {

    private static final long MIB = 1L << 20;
    private static final long PAGE = 4096;
    private static final long BUFFER = 64 << 10;
    private static final int BUFFERS = 100;
    private static final long VCM_START = 0x1000_0000L;
    private static final List<PageTableFormat> FORMATS = List.of(PageTableFormats.byName("arm64-4k"),
        PageTableFormats.byName("armv7-short"), PageTableFormats.byName("x86-64"));

    @Param({"3", "100"})
    public int devices;

    @Param({"adjacent", "gapped"})
    public String layout;

    /** The IOTLB operations and syncs of one measured invocation (100 unbacks), over all devices. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.EVENTS)
    public static class Ops {
        /** IOTLB invalidations issued (range + PASID + whole), all devices. */
        public long invalidations;
        /** Burst-fence syncs, all devices. */
        public long syncs;
    }

    private Vcmm vcmm;
    private final List<Device> all = new ArrayList<>();
    private final List<Reservation> reservations = new ArrayList<>();
    private final List<PhysMem> memory = new ArrayList<>();
    private long invalidationsBefore;
    private long syncsBefore;
    private final byte[] one = new byte[1];

    @Setup(Level.Trial)
    public void setUp() {
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(0x8000_0000L).size(64 * MIB))
            .memoryType(MemoryType.builder("pt").base(0x4000_0000L).size(64 * MIB))
            .pageTableMemory("pt")
            .build();
        Vcm vcm = vcmm.createVcm(VCM_START, 256 * MIB);
        for (int i = 0; i < devices; i++) {
            Device d = vcmm.device("dev" + i, FORMATS.get(i % FORMATS.size()));
            vcmm.assoc(vcm, d).activate();
            all.add(d);
        }
        long gap = "gapped".equals(layout) ? PAGE : 0;
        for (int i = 0; i < BUFFERS; i++) {
            reservations.add(vcm.reserveAt(VCM_START + i * (BUFFER + gap), BUFFER, ReservationAttributes.RW));
            memory.add(vcmm.physAlloc("ddr", BUFFER, ChunkPolicy.VCMM));
        }
    }

    /** Backs every reservation and fills every device's IOTLB with one entry per reservation; reads the counters. */
    @Setup(Level.Invocation)
    public void backAll() {
        for (int i = 0; i < BUFFERS; i++) {
            reservations.get(i).back(memory.get(i));
        }
        for (Device d : all) {
            for (Reservation r : reservations) {
                d.read(r.address(), one, 0, 1);
            }
        }
        invalidationsBefore = invalidations();
        syncsBefore = syncs();
    }

    @TearDown(Level.Invocation)
    public void count(Ops ops) {
        // the last invocation's counts (every invocation issues the same): EVENTS counters are reported as they stand
        ops.invalidations = invalidations() - invalidationsBefore;
        ops.syncs = syncs() - syncsBefore;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        vcmm.close();
    }

    private long invalidations() {
        long n = 0;
        for (Device d : all) {
            IotlbStats s = d.iotlb();
            n += s.rangeInvalidations() + s.pasidInvalidations() + s.flushes();
        }
        return n;
    }

    private long syncs() {
        long n = 0;
        for (Device d : all) {
            DeviceStats s = d.stats();
            n += s.syncs();
        }
        return n;
    }

    /** 100 unbacks, each invalidating and synchronizing every device at once. */
    @Benchmark
    public int oneByOne() {
        for (Reservation r : reservations) {
            r.unback();
        }
        return reservations.size();
    }

    /** The same 100 unbacks in one batch: merged invalidations and one sync per device at commit. */
    @Benchmark
    public long batched() {
        try (InvalidationBatch batch = vcmm.batch()) {
            for (Reservation r : reservations) {
                r.unback();
            }
            return batch.gatheredInvalidations();
        }
    }
}
