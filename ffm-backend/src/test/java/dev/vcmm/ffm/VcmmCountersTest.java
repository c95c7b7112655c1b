package dev.vcmm.ffm;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceFaultException;
import dev.vcmm.DeviceStats;
import dev.vcmm.FaultAction;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmStats;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.agrona.concurrent.status.CountersReader;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

import static dev.vcmm.ffm.VcmmCounters.Counter.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A VCMM's live counters: a VCMM whose devices do DMA and fault publishes into a mapped file, and Agrona's
 * {@link CountersReader} over that file agrees with {@link Vcmm#stats()}. Runs in the counters surefire execution
 * ({@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED}, for Agrona's UnsafeBuffer).
 */
class VcmmCountersTest {

    private static final long KIB = 1L << 10;
    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    Vcmm vcmm;
    Device arm;
    Device x86;
    Vcm vcm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 64 * MIB).build();
        arm = vcmm.device("arm", Arm64Lpae4kFormat.INSTANCE);
        x86 = vcmm.device("x86", X86_64Format.INSTANCE);
        vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(vcm, arm).activate();
        vcmm.assoc(vcm, x86).activate(); // two formats: two page tables
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** The sums, computed here from a snapshot (not by VcmmCounters). */
    private static Map<VcmmCounters.Counter, Long> expected(VcmmStats s) {
        Map<VcmmCounters.Counter, Long> e = new EnumMap<>(VcmmCounters.Counter.class);
        for (VcmmCounters.Counter c : VcmmCounters.Counter.values()) {
            e.put(c, 0L);
        }
        for (DeviceStats d : s.devices()) {
            e.merge(IOTLB_HITS, d.iotlb().hits(), Long::sum);
            e.merge(IOTLB_MISSES, d.iotlb().misses(), Long::sum);
            e.merge(WALKS, d.iotlb().misses(), Long::sum);
            e.merge(FAULTS, d.faults(), Long::sum);
            e.merge(RETRIES, d.retries(), Long::sum);
            e.merge(FAILED, d.failed(), Long::sum);
            e.merge(BYTES_READ, d.bytesRead(), Long::sum);
            e.merge(BYTES_WRITTEN, d.bytesWritten(), Long::sum);
            e.merge(SYNCS, d.syncs(), Long::sum);
        }
        for (VcmmStats.VcmStats v : s.vcms()) {
            e.merge(RESERVATIONS, (long) v.reservations(), Long::sum);
            e.merge(RESERVED_BYTES, v.reservedBytes(), Long::sum);
            e.merge(BACKED_BYTES, v.backedBytes(), Long::sum);
            e.merge(TABLE_BYTES, v.tableBytesByFormat().values().stream().mapToLong(Long::longValue).sum(), Long::sum);
            e.merge(PTE_WRITES, v.pteWrites(), Long::sum);
        }
        return e;
    }

    /** {@return each counter as a plain Agrona reader over the file sees it, by type id} */
    private static Map<VcmmCounters.Counter, Long> read(CountersReader reader) {
        Map<VcmmCounters.Counter, Long> out = new EnumMap<>(VcmmCounters.Counter.class);
        reader.forEach((value, id, label) -> out.put(
            VcmmCounters.Counter.values()[reader.getCounterTypeId(id) - VcmmCounters.TYPE_ID_BASE], value));
        return out;
    }

    /** Backs 64 KiB, moves bytes through both devices, takes three faults (failed, retried, terminated), unbacks. */
    private void work() {
        Reservation r = vcm.reserve(64 * KIB, ReservationAttributes.RW, 64 * KIB)
            .back(vcmm.physAlloc("ddr", 64 * KIB, ChunkPolicy.PAGES_4K)); // 16 pages x 2 tables: 32 PTE writes
        byte[] data = new byte[10_000];
        arm.write(r.address(), data, 0, data.length);
        x86.read(r.address(), data, 0, data.length);
        arm.read(r.address() + 100, data, 0, 50);
        Reservation lazy = vcm.reserve(4 * KIB, ReservationAttributes.RW);
        assertThrows(DeviceFaultException.class, () -> arm.read(lazy.address(), data, 0, 8)); // no handler: failed
        arm.hook(f -> {
            lazy.back(vcmm.physAlloc("ddr", 4 * KIB, ChunkPolicy.PAGES_4K)); // 1 page x 2 tables: 2 PTE writes
            return FaultAction.RETRY;
        });
        arm.read(lazy.address(), data, 0, 8);
        arm.hook(f -> FaultAction.TERMINATE);
        assertThrows(DeviceFaultException.class, () -> arm.read(lazy.address() + 4 * KIB, data, 0, 8)); // outside: failed
        r.unback(); // 32 more
    }

    @Test
    void shouldPublishWhatStatsSaysThroughTheFile() {
        try (VcmmCounters counters = VcmmCounters.open(vcmm, dir, "soc", Duration.ZERO)) {
            Path file = counters.file();
            assertEquals(dir, file.getParent());
            assertTrue(file.getFileName().toString().startsWith("soc-" + ProcessHandle.current().pid()), file::toString);
            try (PoolCounters.View view = PoolCounters.map(file)) {
                assertEquals("vcmm", view.kind());
                assertEquals("soc", view.pool());
                assertEquals(ProcessHandle.current().pid(), view.pid());
                assertEquals(0L, VcmmCounters.values(view).get(PTE_WRITES)); // published at open: nothing yet

                work();
                VcmmStats s = vcmm.stats();
                counters.publish();
                Map<VcmmCounters.Counter, Long> seen = read(view.reader());
                assertEquals(expected(s), seen);
                assertEquals(seen, VcmmCounters.values(view));
                assertEquals(3, seen.get(FAULTS));
                assertEquals(1, seen.get(RETRIES));
                assertEquals(2, seen.get(FAILED));
                assertEquals(66, seen.get(PTE_WRITES)); // 32 (back) + 2 (back on demand) + 32 (unback)
                assertEquals(10_000 + 50 + 8, seen.get(BYTES_READ));
                assertEquals(10_000, seen.get(BYTES_WRITTEN));
                assertTrue(seen.get(IOTLB_HITS) > 0 && seen.get(IOTLB_MISSES) > 0, seen::toString);
                assertEquals(seen.get(IOTLB_MISSES), seen.get(WALKS));
                assertEquals(2, seen.get(RESERVATIONS));
                assertEquals(4 * KIB, seen.get(BACKED_BYTES));
                assertTrue(seen.get(TABLE_BYTES) > 0);
                List<String> labels = new ArrayList<>();
                view.reader().forEach((value, id, label) -> labels.add(label));
                assertEquals(VcmmCounters.Counter.values().length, labels.size());
                assertTrue(labels.contains("vcmm 'soc' pte writes (4 KiB pages)"), labels::toString);
                assertTrue(labels.contains("vcmm 'soc' walks (one per iotlb miss)"), labels::toString);
                assertEquals(Map.of(), view.values()); // no pool counter in a VCMM's file
            }
            counters.close();
            assertFalse(Files.exists(file));
            assertThrows(IllegalStateException.class, counters::publish);
            counters.close(); // idempotent
        }
    }

    @Test
    void shouldPublishEveryPeriodFromItsOwnThreadUntilClosed() throws Exception {
        VcmmCounters counters = VcmmCounters.open(vcmm, dir, Duration.ofMillis(5));
        Path file = counters.file();
        assertTrue(file.getFileName().toString().startsWith("vcmm-"));
        Thread publisher = Thread.getAllStackTraces().keySet().stream()
            .filter(t -> t.getName().equals("vcmm-counters-vcmm")).findFirst().orElseThrow();
        assertTrue(publisher.isDaemon());
        try (PoolCounters.View view = PoolCounters.map(file)) {
            work();
            long expected = vcmm.stats().vcms().get(0).pteWrites();
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (VcmmCounters.values(view).get(PTE_WRITES) != expected && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertEquals(expected, VcmmCounters.values(view).get(PTE_WRITES)); // published by the thread, not by us
        }
        counters.close();
        assertFalse(publisher.isAlive());
        assertFalse(Files.exists(file));
    }

    @Test
    void shouldLetThreadsPublishWhileOthersDmaAndOneCloses() throws Exception {
        VcmmCounters counters = VcmmCounters.open(vcmm, dir, Duration.ofMillis(1)); // its own thread publishes too
        Reservation r = vcm.reserve(64 * KIB, ReservationAttributes.RW, 64 * KIB)
            .back(vcmm.physAlloc("ddr", 64 * KIB, ChunkPolicy.PAGES_4K));
        int publishers = 3;
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(publishers + 2);
        java.util.concurrent.atomic.AtomicInteger published = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicInteger refused = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < publishers; t++) {
            threads.add(Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                    while (true) {
                        try {
                            counters.publish();
                            published.incrementAndGet();
                        } catch (IllegalStateException closed) {
                            assertTrue(closed.getMessage().startsWith("already closed"), closed::getMessage);
                            refused.incrementAndGet();
                            return;
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        threads.add(Thread.ofPlatform().start(() -> { // DMA while they publish
            try {
                start.await();
                byte[] b = new byte[4096];
                for (int i = 0; i < 200; i++) {
                    arm.read(r.address() + (i % 16) * 4 * KIB, b, 0, b.length);
                }
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            }
        }));
        start.await();
        while (published.get() < 100) {
            Thread.onSpinWait();
        }
        counters.close();
        for (Thread t : threads) {
            t.join();
        }
        assertEquals(null, failure.get());
        assertEquals(publishers, refused.get()); // every publisher saw the close, none failed otherwise
        assertFalse(Files.exists(counters.file()));
        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals("vcmm-counters-vcmm")));
    }

    @Test
    void shouldRefuseBadArgumentsAndAClosedVcmmLeavingNoFile() throws Exception {
        assertThrows(IllegalArgumentException.class, () -> VcmmCounters.open(vcmm, dir, Duration.ZERO));
        assertThrows(IllegalArgumentException.class, () -> VcmmCounters.open(vcmm, dir, Duration.ofMillis(-1)));
        assertThrows(IllegalArgumentException.class, () -> VcmmCounters.open(vcmm, dir, "", Duration.ZERO));
        assertEquals(List.of(), PoolCounters.list(dir));
        VcmmCounters open = VcmmCounters.open(vcmm, dir);
        vcmm.close();
        assertThrows(IllegalStateException.class, open::publish); // the VCMM is closed
        open.close();
        assertThrows(IllegalStateException.class, () -> VcmmCounters.open(vcmm, dir));
        try (var files = Files.list(dir)) {
            assertEquals(0, files.count());
        }
    }
}
