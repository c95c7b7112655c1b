package dev.vcmm.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static dev.vcmm.cli.MigrationScenarioTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code vcmm run} of a demand-paging scenario: the shipped file, a smaller run checked in detail, and bad files. */
class DemandPagingScenarioTest {

    static final Path SHIPPED = Path.of("..", "scenarios", "demand-paging.json");

    @Test
    void shouldParseTheShippedScenario() throws Exception {
        assertTrue(Files.exists(SHIPPED), "the scenario ships in the repository: " + SHIPPED.toAbsolutePath());
        String text = Files.readString(SHIPPED);
        assertTrue(DemandPagingScenario.isDemandPaging(text));
        assertFalse(MigrationScenario.isMigration(text));
        DemandPagingScenario d = DemandPagingScenario.parse(text, SHIPPED.toString());
        assertEquals(64L << 20, d.bufferSize());
        assertEquals(64L << 10, d.pageSize());
        assertEquals(2, d.threads());
        assertFalse(DemandPagingScenario.isDemandPaging(Scenario.defaultText()), "the camera demo is not demand paging");
    }

    @Test
    void shouldBackEveryPageOnRequestAndReadTheHandlersBytes(@TempDir Path dir) throws Exception {
        String text = Files.readString(SHIPPED).replace("\"size\": \"64M\"", "\"size\": \"4M\"");
        Path f = dir.resolve("small.json");
        Files.writeString(f, text);
        DemandPagingScenario d = DemandPagingScenario.parse(text, f.toString());
        DemandPagingRunner.Result r = DemandPagingRunner.run(d, new PrintStream(new ByteArrayOutputStream(), true,
            StandardCharsets.UTF_8));
        long pages = (4L << 20) / (64 << 10);
        assertEquals(pages, r.pagesBacked(), "one page backed per 64 KiB: " + r);
        assertEquals(pages, r.granted(), "one request granted per page: " + r);
        assertEquals(r.requests(), r.granted() + r.refused());
        assertEquals(0, r.refused());
        assertEquals(0, r.failed());
        assertEquals(pages, r.faults(), "each page faults once, on its first read");
        assertTrue(r.maxLatencyNanos() > 0 && r.meanLatencyNanos() > 0 && r.meanLatencyNanos() <= r.maxLatencyNanos());
        assertEquals(4L << 20, r.bytesRead());
        assertEquals(0, r.mismatchedBytes());
        MigrationScenarioTest.Run cli = run(f.toString());
        assertEquals(0, cli.code(), cli.err());
        assertTrue(cli.out().contains("page requests    64 (granted 64, refused 0, queue full 0)"), cli.out());
        assertTrue(cli.out().contains("bytes read == handler's: yes"), cli.out());
    }

    @Test
    void shouldRefuseABadDemandPagingScenarioNamingTheField(@TempDir Path dir) throws Exception {
        String text = Files.readString(SHIPPED);
        Path f = dir.resolve("bad.json");
        Files.writeString(f, text.replace("\"pageSize\": \"64K\"", "\"pageSize\": \"48K\""));
        MigrationScenarioTest.Run r = run(f.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("demandPaging.buffer.pageSize"), r.err());
        Files.writeString(f, text.replace("\"memoryType\": \"ddr\"", "\"memoryType\": \"sram\""));
        r = run(f.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("demandPaging.buffer.memoryType") && r.err().contains("no memory type"), r.err());
        Files.writeString(f, text.replace("\"readBytes\": 4096", "\"readBytes\": 3000"));
        r = run(f.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("demandPaging.device.readBytes"), r.err());
        Files.writeString(f, text);
        r = run(f.toString(), "--json");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("do not apply"), r.err());
    }
}
