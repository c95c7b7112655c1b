package dev.vcmm.cli;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.pagetable.Access;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.zip.CRC32;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The default scenario at a reduced size (half of each dimension: 1080p frames; two frames): its numbers make sense, and
 * every consumer reads what its producer wrote.
 */
class ScenarioRunnerTest {

    private static final ChunkPolicy POLICY_1M = ChunkPolicy.parse("1M+64K+4K");

    static ScenarioRunner.Result result;

    @BeforeAll
    static void runTheDefaultScenarioSmall() {
        result = new ScenarioRunner().run(Scenario.defaultScenario().resized(2, 0.5), null, false);
    }

    private static ScenarioRunner.PolicyResult policy(ChunkPolicy p) {
        return result.policies().stream().filter(r -> r.policy().equals(p)).findFirst().orElseThrow();
    }

    private static ScenarioRunner.DeviceResult device(ChunkPolicy p, String name) {
        return policy(p).devices().stream().filter(d -> d.name().equals(name)).findFirst().orElseThrow();
    }

    @Test
    void shouldRunEveryPolicyToTheEnd() {
        assertFalse(result.interrupted());
        assertEquals(4, result.policies().size());
        for (ScenarioRunner.PolicyResult p : result.policies()) {
            assertTrue(p.complete(), p.policy() + " complete");
            assertEquals(2, p.frames());
            assertEquals(0, p.faults(), "nothing faults in the default scenario");
            assertTrue(p.bytes() > 0 && p.dmaBytesPerSecond() > 0 && p.mapNanos() > 0 && p.unmapNanos() > 0, p.toString());
        }
        // the same accesses under every policy
        long bytes = result.policies().getFirst().bytes();
        result.policies().forEach(p -> assertEquals(bytes, p.bytes(), p.policy() + " moved the same bytes"));
    }

    @Test
    void shouldMissTheIotlbLessPerMibWith1MChunksThanWith4KPages() {
        ScenarioRunner.PolicyResult pages = policy(ChunkPolicy.PAGES_4K);
        ScenarioRunner.PolicyResult chunks = policy(POLICY_1M);
        assertTrue(chunks.iotlbMissesPerMiB() < pages.iotlbMissesPerMiB() / 2,
            chunks.iotlbMissesPerMiB() + " vs " + pages.iotlbMissesPerMiB());
        assertEquals(pages.misses(), pages.walks(), "every miss walks once");
        // the ARMv7 short-descriptor camera has 1M sections: streaming costs one miss per section instead of per page
        assertEquals(256.0, device(ChunkPolicy.PAGES_4K, "camera").missesPerMiB(), 1.0, "one miss per 4K page");
        // a 1080p frame is 7x1M + 14x64K + 9x4K: 30 leaves in 7.9M
        assertEquals(30 / 7.91, device(POLICY_1M, "camera").missesPerMiB(), 0.2, "one miss per section, large page or page");
        // arm64-4k's strided walk over 4K pages misses on every row; 64K runs and 2M blocks cover many rows
        assertTrue(device(POLICY_1M, "isp").missesPerMiB() < device(ChunkPolicy.PAGES_4K, "isp").missesPerMiB() / 10);
        // x86-64 has no 64K leaf: 64K chunks map as 4K pages and spare it nothing
        assertEquals(device(ChunkPolicy.PAGES_4K, "encoder").misses(), device(ChunkPolicy.parse("64K+4K"), "encoder").misses());
    }

    @Test
    void shouldWriteFewerPtesIntoLessTableMemoryWithLargerChunks() {
        ScenarioRunner.PolicyResult pages = policy(ChunkPolicy.PAGES_4K);
        ScenarioRunner.PolicyResult chunks = policy(POLICY_1M);
        assertTrue(chunks.pteWrites() < pages.pteWrites(), chunks.pteWrites() + " vs " + pages.pteWrites());
        assertTrue(chunks.pageTableBytes() < pages.pageTableBytes());
        assertTrue(chunks.chunks() < pages.chunks() / 10);
        // 4K pages: one leaf entry per page per table; the media VCM has three formats, the CPU VCM one
        Scenario s = result.scenario();
        long preview = s.buffer("preview").size() / 4096 * 2; // contiguous: mapped with large leaves whatever the policy
        assertTrue(pages.pteWrites() > 3 * (2 * s.buffer("raw").size() + 2 * s.buffer("frame").size()) / 4096 - preview,
            "at least one entry per 4K page of the scattered buffers, " + pages.pteWrites());
    }

    @Test
    void shouldReadEveryByteAsItsProducerWroteIt() {
        for (ScenarioRunner.PolicyResult p : result.policies()) {
            assertEquals(0, p.mismatches(), p.policy() + ": " + p.firstMismatch());
            assertTrue(p.verifiedBytes() > 0);
        }
    }

    @Test
    void shouldChecksumTheSameFrameOnTheProducerAndTheConsumerDevice() {
        for (ScenarioRunner.PolicyResult p : result.policies()) {
            int pairs = 0;
            for (int frame = 0; frame < 2; frame++) {
                // the ISP (arm64-4k SMMU) writes the preview, the one-to-one display scans it out;
                // the encoder (x86-64 IOMMU) writes the bitstream, the CPU (arm64-4k MMU) reads it
                for (String[] pair : new String[][] {{"isp", "display", "preview"}, {"encoder", "cpu", "bitstream"}}) {
                    ScenarioRunner.Transfer w = transfer(p, frame, pair[0], Access.WRITE, pair[2]);
                    ScenarioRunner.Transfer r = transfer(p, frame, pair[1], Access.READ, pair[2]);
                    assertEquals(w.index(), r.index());
                    assertNotEquals(-1, w.crc());
                    assertEquals(w.crc(), r.crc(), p.policy() + " frame " + frame + ": " + pair[1] + " read what " + pair[0] + " wrote");
                    assertEquals(expectedCrc(result.scenario().buffer(pair[2]).size(),
                        (long) frame * result.scenario().workload().size() + indexOf(pair[0], Access.WRITE, pair[2]) + 1), r.crc());
                    pairs++;
                }
            }
            assertEquals(4, pairs);
        }
    }

    private static ScenarioRunner.Transfer transfer(ScenarioRunner.PolicyResult p, int frame, String device, Access access, String buffer) {
        return p.transfers().stream().filter(t -> t.frame() == frame && t.device().equals(device) && t.access() == access
            && t.buffer().equals(buffer)).findFirst().orElseThrow();
    }

    private static int indexOf(String device, Access access, String buffer) {
        List<Scenario.StepSpec> w = result.scenario().workload();
        for (int i = 0; i < w.size(); i++) {
            if (w.get(i).device().equals(device) && w.get(i).access() == access && w.get(i).buffer().equals(buffer)) {
                return i;
            }
        }
        throw new AssertionError();
    }

    /** @return the CRC32 of what write {@code generation} puts into a buffer of {@code size} bytes, computed apart from any device */
    private static long expectedCrc(long size, long generation) {
        CRC32 crc = new CRC32();
        byte[] b = new byte[1 << 16];
        for (long off = 0; off < size; off += b.length) {
            int n = (int) Math.min(b.length, size - off);
            ScenarioRunner.fill(b, n, generation, off);
            crc.update(b, 0, n);
        }
        return crc.getValue();
    }

    @Test
    void shouldFillDifferentBytesForDifferentWritesAndPages() {
        byte[] a = new byte[8192];
        byte[] b = new byte[8192];
        ScenarioRunner.fill(a, a.length, 1, 0);
        ScenarioRunner.fill(b, b.length, 2, 0);
        assertFalse(java.util.Arrays.equals(a, b), "another write");
        assertFalse(java.util.Arrays.equals(a, 0, 4096, a, 4096, 8192), "another page");
        byte[] c = new byte[100];
        ScenarioRunner.fill(c, 100, 1, 4000);
        assertTrue(java.util.Arrays.equals(c, 0, 100, a, 4000, 4100), "a function of the offset, not of the burst");
    }

    @Test
    void shouldStopCleanlyAndKeepWhatWasMeasured() {
        ScenarioRunner runner = new ScenarioRunner();
        AtomicInteger steps = new AtomicInteger();
        ScenarioRunner.Result r = runner.run(Scenario.defaultScenario().resized(3, 0.25), (policy, done, total, frame) -> {
            if (steps.incrementAndGet() == 10) {
                runner.stop(); // as the Ctrl-C shutdown hook does, from another thread
            }
        }, false);
        assertTrue(r.interrupted());
        assertEquals(1, r.policies().size(), "no policy starts after the stop");
        ScenarioRunner.PolicyResult p = r.policies().getFirst();
        assertFalse(p.complete());
        assertEquals(1, p.frames(), "the first frame's 8 steps ran, the second stopped in its third step");
        assertTrue(p.bytes() > 0 && p.pteWrites() > 0 && p.unmapNanos() > 0, "measured and torn down: " + p);
        assertEquals(0, p.mismatches());

        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        ScenarioReport.print(r, new PrintStream(bytes, true, StandardCharsets.UTF_8));
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertTrue(out.contains("policy 4K: 1 of 3 frames (stopped)"), out);
        assertTrue(out.contains("interrupted, these are the numbers measured so far"), out);
        assertTrue(out.contains("verdict: only 4K ran: nothing to compare"), out);
    }

    @Test
    void shouldExitWith130AndPrintWhatWasMeasuredWhenStopped() {
        ScenarioRunner runner = new ScenarioRunner();
        runner.stop();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = ScenarioCommand.run(Scenario.defaultScenario().resized(1, 0.25),
            new ScenarioCommand.Options(null, 0, 0.25, null, false, null, false, false, false), runner,
            new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8), false);
        assertEquals(130, code);
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("stopped; printing what was measured so far"));
        assertTrue(out.toString(StandardCharsets.UTF_8).contains("nothing measured yet"));
    }
}
