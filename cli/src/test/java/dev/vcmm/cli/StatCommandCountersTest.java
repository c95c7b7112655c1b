package dev.vcmm.cli;

import dev.vcmm.ffm.SegmentPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code vcmm stat --once}: reads a live pool's counter file and prints what {@code stats()} says. Runs in the
 * surefire execution with {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED}, as the launcher passes it.
 */
class StatCommandCountersTest {

    private final CliCapture cli = new CliCapture();

    @TempDir
    Path dir;

    @Test
    void shouldPrintALivePoolsCountersOnce() {
        try (SegmentPool pool = SegmentPool.builder(16L << 20).name("statted").counters(dir).build()) {
            MemorySegment a = pool.allocate(100);
            MemorySegment b = pool.allocate(3L << 20);
            b.fill((byte) 1);
            SegmentPool.Stats st = pool.stats(); // publishes
            assertEquals(0, cli.run("stat", "--once", dir.toString()), cli.err());
            String out = cli.out();
            assertTrue(out.contains("pool 'statted' pid " + ProcessHandle.current().pid() + " (running)"), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' allocations", st.allocations())), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' resident bytes", st.residentBytes())), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' allocated bytes, large (> chunk)", 3L << 20)), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' mmaps", 1)), out);
            pool.free(a);
            pool.free(b);
            cli.resetOut();
            assertEquals(0, cli.run("stat", "--once", pool.countersFile().orElseThrow().toString()), cli.err());
            assertTrue(cli.out().contains("pool 'statted'"), cli.out());
        }
        assertTrue(Files.notExists(dir.resolve("statted-" + ProcessHandle.current().pid() + ".vcmmstat")));
    }

    @Test
    void shouldSayWhenThereIsNothingToShow() {
        assertEquals(1, cli.run("stat", "--once", dir.toString()));
        assertTrue(cli.err().contains("no counter files"), cli.err());
        assertEquals(1, cli.run("stat", "--once", dir.resolve("nope").toString()));
        assertTrue(cli.err().contains("no such file or directory"), cli.err());
        assertEquals(2, cli.run("stat", "--bogus"));
        assertEquals(2, cli.run("stat", "--interval", "0"));
    }
}
