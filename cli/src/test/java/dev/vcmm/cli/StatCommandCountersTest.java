package dev.vcmm.cli;

import dev.vcmm.ffm.SegmentPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code vcmm stat --once}: reads a live pool's counter file and prints what {@code stats()} says. Runs in the
 * surefire execution with {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED}, as the launcher passes it.
 */
class StatCommandCountersTest {

    private final ByteArrayOutputStream outBytes = new ByteArrayOutputStream();
    private final ByteArrayOutputStream errBytes = new ByteArrayOutputStream();

    @TempDir
    Path dir;

    private int run(String... args) {
        return Main.run(args, new PrintStream(outBytes, true, StandardCharsets.UTF_8),
            new PrintStream(errBytes, true, StandardCharsets.UTF_8));
    }

    private String out() {
        return outBytes.toString(StandardCharsets.UTF_8);
    }

    private String err() {
        return errBytes.toString(StandardCharsets.UTF_8);
    }

    @Test
    void shouldPrintALivePoolsCountersOnce() {
        try (SegmentPool pool = SegmentPool.builder(16L << 20).name("statted").counters(dir).build()) {
            MemorySegment a = pool.allocate(100);
            MemorySegment b = pool.allocate(3L << 20);
            b.fill((byte) 1);
            SegmentPool.Stats st = pool.stats(); // publishes
            assertEquals(0, run("stat", "--once", dir.toString()), err());
            String out = out();
            assertTrue(out.contains("pool 'statted' pid " + ProcessHandle.current().pid() + " (running)"), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' allocations", st.allocations())), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' resident bytes", st.residentBytes())), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' allocated bytes, large (> chunk)", 3L << 20)), out);
            assertTrue(out.contains(String.format("%,20d - pool 'statted' mmaps", 1)), out);
            pool.free(a);
            pool.free(b);
            outBytes.reset();
            assertEquals(0, run("stat", "--once", pool.countersFile().orElseThrow().toString()), err());
            assertTrue(out().contains("pool 'statted'"), out());
        }
        assertTrue(Files.notExists(dir.resolve("statted-" + ProcessHandle.current().pid() + ".vcmmstat")));
    }

    @Test
    void shouldSayWhenThereIsNothingToShow() {
        assertEquals(1, run("stat", "--once", dir.toString()));
        assertTrue(err().contains("no counter files"), err());
        assertEquals(1, run("stat", "--once", dir.resolve("nope").toString()));
        assertTrue(err().contains("no such file or directory"), err());
        assertEquals(2, run("stat", "--bogus"));
        assertEquals(2, run("stat", "--interval", "0"));
    }
}
