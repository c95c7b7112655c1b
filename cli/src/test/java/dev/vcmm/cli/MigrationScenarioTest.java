package dev.vcmm.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code vcmm run} of a live-migration scenario: the shipped file, a smaller run checked in detail, and bad files. */
class MigrationScenarioTest {

    static final Path SHIPPED = Path.of("..", "scenarios", "live-migration.json");

    record Run(int code, String out, String err) {
    }

    static Run run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = ScenarioCommand.run().run(List.of(args), new PrintStream(out, true, StandardCharsets.UTF_8),
            new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void shouldParseTheShippedScenario() throws Exception {
        assertTrue(Files.exists(SHIPPED), "the scenario ships in the repository: " + SHIPPED.toAbsolutePath());
        String text = Files.readString(SHIPPED);
        assertTrue(MigrationScenario.isMigration(text));
        MigrationScenario m = MigrationScenario.parse(text, SHIPPED.toString());
        assertEquals(2, m.devices().size());
        assertEquals(64L << 20, m.guest().size());
        assertFalse(MigrationScenario.isMigration(Scenario.defaultText()), "the camera demo is not a migration");
    }

    @Test
    void shouldConvergeAndCopyTheSourceExactly(@TempDir Path dir) throws Exception {
        String text = Files.readString(SHIPPED).replace("\"64M\"", "\"8M\"").replace("\"32M\"", "\"4M\"")
            .replace("\"16M\", \"writesPerRound\"", "\"2M\", \"writesPerRound\"").replace("\"8M\",  \"writesPerRound\"", "\"2M\",  \"writesPerRound\"");
        Path f = dir.resolve("small.json");
        Files.writeString(f, text);
        MigrationScenario m = MigrationScenario.parse(text, f.toString());
        MigrationRunner.Result r = MigrationRunner.run(m, new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        assertEquals(0, r.mismatchedBytes());
        assertTrue(r.converged(), r.toString());
        assertEquals(8L << 20, r.rounds().get(0).bytesCopied(), "round 0 copies everything");
        assertTrue(r.rounds().size() >= 3, "at least one pre-copy round between the full copy and the stop-and-copy");
        for (MigrationRunner.Round round : r.rounds().subList(1, r.rounds().size())) {
            assertEquals(round.dirtyPages() * 4096L, round.bytesCopied(), "copies exactly the dirty pages: " + round);
        }
        assertTrue(r.rounds().get(1).deviceWrites() > 0, "the devices wrote during the first round");
        Run cli = run(f.toString());
        assertEquals(0, cli.code(), cli.err());
        assertTrue(cli.out().contains("stop-and-copy"), cli.out());
        assertTrue(cli.out().contains("copy == source: yes"), cli.out());
    }

    @Test
    void shouldRefuseABadMigrationScenarioNamingTheField(@TempDir Path dir) throws Exception {
        String text = Files.readString(SHIPPED);
        Path f = dir.resolve("bad.json");
        Files.writeString(f, text.replace("\"format\": \"x86-64\"", "\"format\": \"armv7-short\""));
        Run r = run(f.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("migration.devices[0].format") && r.err().contains("no hardware dirty state"), r.err());
        Files.writeString(f, text.replace("\"destination\": \"dest\"", "\"destination\": \"ddr\""));
        r = run(f.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("migration.destination"), r.err());
        Files.writeString(f, text);
        r = run(f.toString(), "--json");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("do not apply"), r.err());
    }
}
