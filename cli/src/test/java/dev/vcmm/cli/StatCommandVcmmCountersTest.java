package dev.vcmm.cli;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceFaultException;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.ffm.PoolCounters;
import dev.vcmm.ffm.SegmentPool;
import dev.vcmm.ffm.VcmmCounters;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code vcmm stat --once} over a VCMM's counter file ({@link VcmmCounters}), next to a pool's, and {@code vcmm stat
 * PID}. Runs in the surefire execution with {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED}.
 */
class StatCommandVcmmCountersTest {

    private final CliCapture cli = new CliCapture();

    private static final long KIB = 1L << 10;
    private static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    Vcmm vcmm;
    Device gpu;
    Vcm vcm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 64 * MIB).build();
        gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    /** 16 pages backed (16 PTE writes), 8 KiB read, one fault that fails. */
    private void work() {
        Reservation r = vcm.reserve(64 * KIB, ReservationAttributes.RW, 64 * KIB)
            .back(vcmm.physAlloc("ddr", 64 * KIB, ChunkPolicy.PAGES_4K));
        gpu.read(r.address(), new byte[8192], 0, 8192);
        assertThrows(DeviceFaultException.class, () -> gpu.read(r.address() + 64 * KIB, new byte[4], 0, 4));
    }

    @Test
    void shouldPrintAVcmmsCountersNextToAPoolsOnce() {
        try (VcmmCounters counters = VcmmCounters.open(vcmm, dir, "soc", Duration.ZERO);
             SegmentPool pool = SegmentPool.builder(16 * MIB).name("heap").counters(dir).build()) {
            work();
            counters.publish();
            assertEquals(0, cli.run("stat", "--once", dir.toString()), cli.err());
            String out = cli.out();
            long pid = ProcessHandle.current().pid();
            assertTrue(out.contains("vcmm 'soc' pid " + pid + " (running)"), out);
            assertTrue(out.contains("pool 'heap' pid " + pid + " (running)"), out);
            assertTrue(out.contains(String.format("%,20d - vcmm 'soc' pte writes (4 KiB pages)", 16)), out);
            assertTrue(out.contains(String.format("%,20d - vcmm 'soc' dma bytes read", 8192)), out);
            assertTrue(out.contains(String.format("%,20d - vcmm 'soc' faults", 1)), out);
            assertTrue(out.contains(String.format("%,20d - vcmm 'soc' failed accesses", 1)), out);
            cli.resetOut();
            assertEquals(0, cli.run("stat", "--once", counters.file().toString()), cli.err());
            assertTrue(cli.out().contains("vcmm 'soc'") && !cli.out().contains("pool 'heap'"), cli.out());
        }
    }

    @Test
    void shouldShowOnlyTheFilesOfAPidInTheDefaultDirectory() {
        String name = "pidtest-" + UUID.randomUUID();
        long pid = ProcessHandle.current().pid();
        try (VcmmCounters counters = VcmmCounters.open(vcmm, PoolCounters.DEFAULT_DIRECTORY, name, Duration.ZERO)) {
            work();
            counters.publish();
            assertEquals(0, cli.run("stat", "--once", Long.toString(pid)), cli.err());
            String out = cli.out();
            assertTrue(out.contains("vcmm stat pid " + pid + " in " + PoolCounters.DEFAULT_DIRECTORY), out);
            assertTrue(out.contains("vcmm '" + name + "' pid " + pid + " (running)"), out);
            assertTrue(out.contains(String.format("%,20d - vcmm '%s' pte writes (4 KiB pages)", 16, name)), out);
            // no file printed belongs to another process
            assertFalse(out.lines().filter(l -> l.matches("(pool|vcmm) '.*' pid \\d+ .*")).anyMatch(l -> !l.contains(" pid " + pid + " ")),
                out);
            assertFalse(Files.exists(Path.of(Long.toString(pid)))); // it was taken as a PID, not a file
            // a PID with no files (pid 0 writes none) while this process has one: a clear message, exit 1
            cli.resetOut();
            assertEquals(1, cli.run("stat", "--once", "0"));
            assertTrue(cli.err().contains("no counter files of pid 0"), cli.err());
            assertFalse(cli.out().contains(name), cli.out());
        }
    }
}
