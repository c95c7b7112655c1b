package dev.vcmm.cli;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Runs the commands in-process. The backend is whichever {@code ServiceLoader} prefers: the core's
 * simple test backend (from the core test-jar) until the ffm backend registers itself, then that one.
 */
class MainTest {

    private final CliCapture cli = new CliCapture();

    @Test
    void shouldRunTheAllocDemoAndEndCoalesced() {
        assertEquals(0, cli.run("alloc-demo"), cli.err() + cli.out());
        String out = cli.out();
        for (String s : new String[] {"4K pages only", "VCMM 16M+1M+64K+4K", "HUGE 1G+2M+4K", "VCMM contiguous",
            "1080p ARGB frame", "4K UHD ARGB frame", "3 MiB", "100 KiB", "8,294,400", "33,177,600",
            "allocator after allocating:", "allocator after freeing everything:", "largest free block",
            "OK: every block coalesced back; the largest free block is 1G again"}) {
            assertTrue(out.contains(s), "missing '" + s + "' in\n" + out);
        }
        // 2025 pages as policy chunks, whatever the backend: 7x1M + 14x64K + 9x4K
        assertTrue(out.lines().anyMatch(l -> l.startsWith("VCMM contiguous") && l.contains("1080p")
            && l.contains("7x1M 14x64K 9x4K")), out);
        assertTrue(out.lines().anyMatch(l -> l.startsWith("4K pages only") && l.contains("1080p") && l.contains(" 2025 ")
            && l.contains("2025x4K")), out);
        assertEquals("", cli.err());
    }

    @Test
    void shouldRejectArgumentsToAllocDemo() {
        assertEquals(2, cli.run("alloc-demo", "extra"));
        assertTrue(cli.err().contains("takes no arguments"), cli.err());
    }

    @Test
    void shouldPrintUsageOnStderrForHelpNothingOrUnknown() {
        for (String[] args : new String[][] {{}, {"help"}, {"--help"}}) {
            cli.resetOut();
            cli.resetErr();
            assertEquals(2, cli.run(args));
            assertTrue(cli.err().startsWith("usage: vcmm COMMAND"), cli.err());
            assertTrue(cli.err().contains("  demo "), cli.err());
            assertEquals("", cli.out());
        }
        cli.resetErr();
        assertEquals(2, cli.run("frobnicate"));
        assertTrue(cli.err().startsWith("vcmm: unknown command 'frobnicate'"), cli.err());
        assertTrue(cli.err().contains("usage:"), cli.err());
    }

    @Test
    void shouldFormatSizes() {
        assertEquals("4K", AllocDemoCommand.size(4096));
        assertEquals("1G", AllocDemoCommand.size(1L << 30));
        assertEquals("7.9M", AllocDemoCommand.size(8_294_400));
        assertEquals("100K", AllocDemoCommand.size(100 << 10));
        assertEquals("0B", AllocDemoCommand.size(0));
    }

    private static final String[] SMALL = {"--frames", "1", "--scale", "0.25", "--no-warmup", "--no-progress"};

    private int runSmall(String... args) {
        String[] all = java.util.Arrays.copyOf(args, args.length + SMALL.length);
        System.arraycopy(SMALL, 0, all, args.length, SMALL.length);
        return cli.run(all);
    }

    @Test
    void shouldRunTheScenarioDemoWithTablesAndAVerdict() {
        assertEquals(0, runSmall("demo"), cli.err() + cli.out());
        String out = cli.out();
        for (String s : new String[] {"scenario \"camera-to-display\"", "policy 4K: 1 of 1 frames", "policy 16M+1M+64K+4K: 1 of 1 frames",
            "IOTLB misses", "misses/MiB", "leaf entries written", "all equal", "PTEs written", "page tables", "walks", "faults",
            "map ms", "unmap ms", "DMA MiB/s", "IOTLB misses per MiB by device and policy:", "verdict: "}) {
            assertTrue(out.contains(s), "missing '" + s + "' in\n" + out);
        }
        assertTrue(out.lines().filter(l -> l.startsWith("verdict: ")).findFirst().orElseThrow()
            .matches("verdict: \\S+ chunks: [0-9.]+% fewer IOTLB misses per MiB than 4K pages .*"), out);
        assertEquals("", cli.err(), "no progress bar when asked for none");
    }

    @Test
    void shouldPrintOneJsonObjectWithTheIssuesFields() throws IOException {
        assertEquals(0, runSmall("demo", "--json", "--policies", "4K,1M+64K+4K"), cli.err());
        JsonNode root = JsonMapper.builder().build().readTree(cli.out());
        assertEquals("camera-to-display", root.get("scenario").asText());
        assertEquals(2, root.get("policies").size());
        JsonNode p = root.get("policies").get(1);
        assertEquals("1M+64K+4K", p.get("policy").asText());
        for (String f : new String[] {"pteWrites", "pageTableBytes", "iotlbMissesPerMiB", "walks", "faults", "mapNanos", "unmapNanos",
            "dmaBytesPerSecond"}) {
            assertTrue(p.get(f).isNumber(), f + " in " + p);
        }
        assertTrue(p.get("iotlbMissesPerMiB").asDouble() < root.get("policies").get(0).get("iotlbMissesPerMiB").asDouble());
        assertFalse(cli.out().contains("verdict: "), "the JSON only: " + cli.out());
    }

    @Test
    void shouldRunAScenarioFileAndNameTheBadFieldOfABrokenOne(@TempDir Path dir) throws IOException {
        Path good = dir.resolve("s.json");
        Files.writeString(good, Scenario.defaultText().replace("\"frames\": 4", "\"frames\": 1"));
        assertEquals(0, cli.run("run", good.toString(), "--scale", "0.25", "--no-warmup", "--no-progress", "--policies", "4K,64K+4K"), cli.err());
        assertTrue(cli.out().contains("policy 64K+4K: 1 of 1 frames"), cli.out());

        Path bad = dir.resolve("bad.json");
        Files.writeString(bad, Scenario.defaultText().replace("\"x86-64\"", "\"arm65\""));
        cli.resetErr();
        assertEquals(2, cli.run("run", bad.toString()));
        assertTrue(cli.err().startsWith("vcmm run: " + bad + ": devices[2].format: unknown format \"arm65\"; known: "), cli.err());

        cli.resetErr();
        assertEquals(2, cli.run("run", dir.resolve("missing.json").toString()));
        assertTrue(cli.err().startsWith("vcmm run: cannot read "), cli.err());
        cli.resetErr();
        assertEquals(2, cli.run("run"));
        assertTrue(cli.err().contains("name the scenario file"), cli.err());
        cli.resetErr();
        assertEquals(2, cli.run("demo", "--frames", "0"));
        assertTrue(cli.err().contains("--frames=0 must be a positive whole number"), cli.err());
    }

    @Test
    void shouldWriteTheGraphAsDotOrSayHowToRenderIt(@TempDir Path dir) throws IOException {
        Path dot = dir.resolve("g.dot");
        assertEquals(0, runSmall("demo", "--policies", "4K,1M+64K+4K", "--graph", dot.toString()), cli.err());
        String text = Files.readString(dot);
        assertTrue(text.startsWith("digraph vcmm {"), text);
        for (String s : new String[] {"camera", "display", "ONE_TO_ONE", "armv7-short root", "x86-64 root", "backed by"}) {
            assertTrue(text.contains(s), "missing " + s + " in\n" + text);
        }
        cli.resetErr();
        Path svg = dir.resolve("g.svg");
        assertEquals(0, runSmall("demo", "--policies", "4K,1M+64K+4K", "--graph", svg.toString()), cli.err());
        if (Files.exists(svg)) {
            assertTrue(Files.readString(svg).contains("<svg"), "rendered by Graphviz");
        } else {
            assertTrue(cli.err().contains("Graphviz 'dot' is not on the PATH"), cli.err());
            assertTrue(cli.err().contains("apt install graphviz"), cli.err());
            assertTrue(Files.readString(dir.resolve("g.dot")).startsWith("digraph vcmm {"));
        }
    }

    @Test
    void shouldPrintTheDefaultScenario() {
        assertEquals(0, cli.run("demo", "--print-scenario"));
        assertEquals(Scenario.defaultText(), cli.out());
    }
}
