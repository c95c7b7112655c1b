package dev.vcmm.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vcmm.DeviceKind;
import dev.vcmm.cli.ScenarioRunner.DeviceResult;
import dev.vcmm.cli.ScenarioRunner.PolicyResult;

import java.io.PrintStream;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.StringJoiner;

/**
 * Prints a {@link ScenarioRunner.Result}: a table per policy, a summary table, and the verdict; or the same as
 * one JSON object.
 *
 * <p><b>Thread-safety:</b> stateless.
 */
final class ScenarioReport {

    private static final double MIB = 1 << 20;
    private static final JsonMapper JSON = JsonMapper.builder().enable(SerializationFeature.INDENT_OUTPUT).build();

    private ScenarioReport() {
    }

    /** Prints the header of a run before it starts. */
    static void header(Scenario s, PrintStream out) {
        out.printf("vcmm: scenario \"%s\"%s%n", s.name(), s.description().isEmpty() ? "" : ": " + s.description());
        StringJoiner devices = new StringJoiner(", ");
        for (Scenario.DeviceSpec d : s.devices()) {
            devices.add(d.name() + " (" + (d.kind() == DeviceKind.ONE_TO_ONE ? "one-to-one"
                : (d.kind() == DeviceKind.CPU ? "CPU " : "") + d.format().name() + ", IOTLB " + d.iotlbEntries() + " entries "
                    + d.iotlbWays() + "-way") + ")");
        }
        out.printf("devices: %s%n", devices);
        StringJoiner buffers = new StringJoiner(", ");
        for (Scenario.BufferSpec b : s.buffers()) {
            buffers.add(b.count() + "x " + b.name() + " " + AllocDemoCommand.size(b.size()) + (b.contiguous() ? " contiguous" : "")
                + (b.policy() != null ? " (" + b.policy() + ")" : ""));
        }
        out.printf("buffers: %s%n", buffers);
        StringJoiner memory = new StringJoiner(", ");
        for (Scenario.MemorySpec m : s.memoryTypes()) {
            memory.add(m.name() + " " + AllocDemoCommand.size(m.size()) + (m.fragment() > 0 ? " (" + AllocDemoCommand.size(m.fragment())
                + " fragmented into single pages first)" : "") + (m.name().equals(s.pageTableMemory()) ? " (page tables)" : ""));
        }
        out.printf("memory: %s%n", memory);
        out.printf("%d frames of %d DMA steps, once per chunk policy: %s%n%n", s.frames(), s.workload().size(),
            String.join(", ", s.policies().stream().map(Object::toString).toList()));
    }

    /** Prints the per-policy tables, the summary and the verdict. */
    static void print(ScenarioRunner.Result r, PrintStream out) {
        for (PolicyResult p : r.policies()) {
            out.printf("policy %s: %d of %d frames%s, %,d physical chunks%n", p.policy(), p.frames(), r.scenario().frames(),
                p.complete() ? "" : " (stopped)", p.chunks());
            String row = "  %-10s %-12s %-7s %10s %12s %11s %7s %10s%n";
            out.printf(row, "device", "format", "IOTLB", "moved", "IOTLB misses", "misses/MiB", "faults", "DMA MiB/s");
            for (DeviceResult d : p.devices()) {
                out.printf(Locale.ROOT, row, d.name(), d.format(), d.iotlbEntries() == 0 ? "-" : d.iotlbEntries() + "/" + d.iotlbWays() + "w",
                    AllocDemoCommand.size(d.bytes()), d.kind() == DeviceKind.ONE_TO_ONE ? "-" : String.format("%,d", d.misses()),
                    d.kind() == DeviceKind.ONE_TO_ONE ? "-" : String.format(Locale.ROOT, "%.2f", d.missesPerMiB()),
                    String.format("%,d", d.faults()), d.nanos() == 0 ? "-" : String.format(Locale.ROOT, "%.0f", d.bytes() * 1e9 / d.nanos() / MIB));
            }
            out.printf(Locale.ROOT, row, "all", "", "", AllocDemoCommand.size(p.bytes()), String.format("%,d", p.misses()),
                String.format(Locale.ROOT, "%.2f", p.iotlbMissesPerMiB()), String.format("%,d", p.faults()),
                String.format(Locale.ROOT, "%.0f", p.dmaBytesPerSecond() / MIB));
            out.printf(Locale.ROOT, "  page tables: %,d leaf entries written, %s of tables; map %.1f ms, unmap %.1f ms%n",
                p.pteWrites(), AllocDemoCommand.size(p.pageTableBytes()), p.mapNanos() / 1e6, p.unmapNanos() / 1e6);
            if (p.verifiedBytes() == 0) {
                out.printf("  data: nothing read back yet to check against its producer%n%n");
            } else {
                out.printf("  data: %s read and checked against what its producer wrote: %s%n%n", AllocDemoCommand.size(p.verifiedBytes()),
                    p.mismatches() == 0 ? "all equal" : p.mismatches() + " reads DIFFER; first: " + p.firstMismatch());
            }
        }
        if (r.policies().isEmpty()) {
            out.println("nothing measured yet");
            return;
        }
        String row = "%-16s %13s %12s %11s %11s %7s %9s %9s %10s%n";
        out.printf(row, "policy", "PTEs written", "page tables", "misses/MiB", "walks", "faults", "map ms", "unmap ms", "DMA MiB/s");
        for (PolicyResult p : r.policies()) {
            out.printf(Locale.ROOT, row, p.policy() + (p.complete() ? "" : "*"), String.format("%,d", p.pteWrites()),
                AllocDemoCommand.size(p.pageTableBytes()), String.format(Locale.ROOT, "%.2f", p.iotlbMissesPerMiB()),
                String.format("%,d", p.walks()), String.format("%,d", p.faults()), String.format(Locale.ROOT, "%.1f", p.mapNanos() / 1e6),
                String.format(Locale.ROOT, "%.1f", p.unmapNanos() / 1e6), String.format(Locale.ROOT, "%.0f", p.dmaBytesPerSecond() / MIB));
        }
        out.printf("%nIOTLB misses per MiB by device and policy:%n");
        StringBuilder head = new StringBuilder(String.format("%-10s %-12s", "device", "format"));
        r.policies().forEach(p -> head.append(String.format(" %15s", p.policy())));
        out.println(head);
        for (int i = 0; i < r.policies().getFirst().devices().size(); i++) {
            DeviceResult d0 = r.policies().getFirst().devices().get(i);
            if (d0.kind() == DeviceKind.ONE_TO_ONE) {
                continue;
            }
            StringBuilder line = new StringBuilder(String.format("%-10s %-12s", d0.name(), d0.format()));
            for (PolicyResult p : r.policies()) {
                line.append(String.format(Locale.ROOT, " %15.2f", p.devices().get(i).missesPerMiB()));
            }
            out.println(line);
        }
        if (r.interrupted()) {
            out.println("* stopped before its last frame: interrupted, these are the numbers measured so far");
        }
        out.printf("%nverdict: %s%n", verdict(r));
    }

    /** @return one line comparing every policy's IOTLB misses per MiB with the first policy's */
    static String verdict(ScenarioRunner.Result r) {
        List<PolicyResult> ps = r.policies();
        if (ps.size() < 2) {
            return ps.isEmpty() ? "nothing to compare" : "only " + ps.getFirst().policy() + " ran: nothing to compare";
        }
        PolicyResult base = ps.getFirst();
        PolicyResult best = ps.stream().skip(1).min(Comparator.comparingDouble(PolicyResult::iotlbMissesPerMiB)).orElseThrow();
        String baseName = base.policy().size() == 1 ? base.policy() + " pages" : base.policy() + " chunks";
        if (base.iotlbMissesPerMiB() == 0) {
            return baseName + " had no IOTLB misses: nothing to improve on";
        }
        if (best.iotlbMissesPerMiB() >= base.iotlbMissesPerMiB()) {
            return "no policy had fewer IOTLB misses per MiB than " + baseName + String.format(Locale.ROOT, " (%.2f)", base.iotlbMissesPerMiB());
        }
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "%s chunks: %s fewer IOTLB misses per MiB than %s (%.2f vs %.2f)",
            best.policy(), percent(best.iotlbMissesPerMiB(), base.iotlbMissesPerMiB()), baseName, best.iotlbMissesPerMiB(),
            base.iotlbMissesPerMiB()));
        sb.append(String.format(", %s fewer PTEs written", percent(best.pteWrites(), base.pteWrites())));
        StringJoiner others = new StringJoiner(", ", "; ", "");
        for (PolicyResult p : ps.subList(1, ps.size())) {
            if (p != best) {
                double d = p.iotlbMissesPerMiB();
                others.add(p.policy() + ": " + (d < base.iotlbMissesPerMiB() ? percent(d, base.iotlbMissesPerMiB()) + " fewer"
                    : percent(base.iotlbMissesPerMiB(), d) + " more"));
            }
        }
        return ps.size() > 2 ? sb.append(others) + (r.interrupted() ? " (interrupted: partial runs)" : "") : sb.toString();
    }

    /** @return how much smaller {@code x} is than {@code base}, e.g. {@code 97%}, with a decimal near 100 */
    private static String percent(double x, double base) {
        if (base == 0) {
            return "0%";
        }
        double p = 100 * (1 - x / base);
        return p >= 99 && p < 100 ? String.format(Locale.ROOT, "%.1f%%", p) : String.format(Locale.ROOT, "%.0f%%", p);
    }

    /** @return the result as one JSON object (the {@code --json} output) */
    static String json(ScenarioRunner.Result r) {
        ObjectNode root = JSON.createObjectNode();
        root.put("scenario", r.scenario().name());
        root.put("frames", r.scenario().frames());
        root.put("interrupted", r.interrupted());
        ArrayNode ps = root.putArray("policies");
        for (PolicyResult p : r.policies()) {
            ObjectNode o = ps.addObject();
            o.put("policy", p.policy().toString());
            o.put("pteWrites", p.pteWrites());
            o.put("pageTableBytes", p.pageTableBytes());
            o.put("iotlbMissesPerMiB", round(p.iotlbMissesPerMiB()));
            o.put("walks", p.walks());
            o.put("faults", p.faults());
            o.put("mapNanos", p.mapNanos());
            o.put("unmapNanos", p.unmapNanos());
            o.put("dmaBytesPerSecond", Math.round(p.dmaBytesPerSecond()));
            o.put("framesCompleted", p.frames());
            o.put("bytesMoved", p.bytes());
            o.put("iotlbMisses", p.misses());
            o.put("chunks", p.chunks());
            o.put("verifiedBytes", p.verifiedBytes());
            o.put("mismatches", p.mismatches());
            ArrayNode ds = o.putArray("devices");
            for (DeviceResult d : p.devices()) {
                ObjectNode dn = ds.addObject();
                dn.put("device", d.name());
                dn.put("format", d.format());
                dn.put("bytesMoved", d.bytes());
                dn.put("iotlbMisses", d.misses());
                dn.put("iotlbMissesPerMiB", round(d.missesPerMiB()));
                dn.put("faults", d.faults());
            }
        }
        root.put("verdict", verdict(r));
        try {
            return JSON.writeValueAsString(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write JSON", e);
        }
    }

    private static double round(double x) {
        return Math.round(x * 1000) / 1000.0;
    }
}
