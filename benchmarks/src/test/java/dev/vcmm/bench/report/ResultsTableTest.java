package dev.vcmm.bench.report;

import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The README's results table is exactly what the kept JMH runs render to, and the parser reads JMH's table. */
class ResultsTableTest {

    private static final Path MODULE = Path.of("").toAbsolutePath();
    private static final Path README = MODULE.resolveSibling("README.md");
    private static final Path RESULTS = MODULE.resolve("results/latest");

    @Test
    void readmeTableIsWhatTheResultsRender() throws Exception {
        String readme = Files.readString(README);
        assertEquals(new ResultsTable(RESULTS).render(), ResultsTable.current(readme),
                "the README's results table differs from benchmarks/results/latest: run ./vcmm results");
    }

    @Test
    void replaceKeepsTheRestOfTheReadme() {
        String readme = "intro\n" + ResultsTable.BEGIN + "\nold table\n" + ResultsTable.END + "\noutro\n";
        String out = ResultsTable.replace(readme, "| new |\n");
        assertEquals("intro\n" + ResultsTable.BEGIN + "\n| new |\n" + ResultsTable.END + "\noutro\n", out);
        assertEquals("| new |\n", ResultsTable.current(out));
        assertThrows(IllegalArgumentException.class, () -> ResultsTable.replace("no markers", "x"));
    }

    @Test
    void parsesScoresParamsSecondaryRowsAndNotes() {
        JmhResults r = JmhResults.parse("t", List.of(
                "# Warmup Iteration   1: 41.099 ns/op",
                "[GraphScaleBenchmark] live=100000: 766 heap bytes per live buffer",
                "[GraphScaleBenchmark] live=100000: 771 heap bytes per live buffer",
                "Benchmark                             (format)  (size)  Mode  Cnt     Score      Error  Units",
                "MapUnmapBenchmark.mapUnmapOne         arm64-4k      4k  avgt    5     8.802 ±    0.431  ns/op",
                "MapUnmapBenchmark.mapUnmapOne           x86-64      4k  avgt    5     8.732 ±    0.189  ns/op",
                "MapUnmapBenchmark.mapUnmapOne:allocFailures x86-64  4k  avgt    5       ≈ 0               #",
                ""));
        assertEquals(8.732, r.score("mapUnmapOne", "format=x86-64", "size=4k"));
        assertEquals(8.802, r.score("MapUnmapBenchmark.mapUnmapOne", "format=arm64-4k"));
        assertEquals(0, r.score("mapUnmapOne:allocFailures", "format=x86-64"));
        assertEquals(771, r.note("GraphScaleBenchmark", "live=100000", "heap bytes per live buffer"));
        IllegalArgumentException several = assertThrows(IllegalArgumentException.class, () -> r.score("mapUnmapOne"));
        assertTrue(several.getMessage().contains("several rows"), several.getMessage());
        assertThrows(IllegalArgumentException.class, () -> r.score("mapUnmapOne", "format=riscv-sv39"));
        assertThrows(IllegalArgumentException.class, () -> r.note("GraphScaleBenchmark", "live=0", "heap bytes per live buffer"));
        assertThrows(IllegalArgumentException.class, () -> JmhResults.parse("empty", List.of("# nothing")));
    }
}
