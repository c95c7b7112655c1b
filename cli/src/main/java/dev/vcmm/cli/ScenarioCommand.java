package dev.vcmm.cli;

import dev.vcmm.ChunkPolicy;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * {@code vcmm demo} (the embedded default scenario) and {@code vcmm run SCENARIO.json}: runs a simulated SoC
 * scenario once per chunk policy and prints what each policy cost and saved (see {@link ScenarioRunner}).
 * Progress goes to stderr, results to stdout. Ctrl-C stops the run after its current burst and prints what
 * was measured so far.
 *
 * <p><b>Thread-safety:</b> {@link #run} is called from one thread; it installs a shutdown hook for the run's
 * duration that stops the runner from the JVM's shutdown thread and waits for the report to be printed.
 */
final class ScenarioCommand implements Command {

    /** How long the shutdown hook waits for the stopped run to tear down and print. */
    private static final long REPORT_WAIT_SECONDS = 30;

    private final boolean demo;

    private ScenarioCommand(boolean demo) {
        this.demo = demo;
    }

    /** @return {@code vcmm demo}: the default scenario */
    static ScenarioCommand demo() {
        return new ScenarioCommand(true);
    }

    /** @return {@code vcmm run SCENARIO.json} */
    static ScenarioCommand run() {
        return new ScenarioCommand(false);
    }

    @Override
    public String name() {
        return demo ? "demo" : "run";
    }

    @Override
    public String synopsis() {
        return demo ? "[OPTIONS]" : "SCENARIO.json [OPTIONS]";
    }

    @Override
    public String summary() {
        return demo ? "a camera pipeline on a simulated SoC under 4 chunk policies: do big chunks spare small IOTLBs?"
            : "run a scenario from a JSON file (schema: README.md)";
    }

    private String usage() {
        return """
            usage: vcmm %s
              --frames N        run N frames per policy instead of the scenario's
              --scale F         scale every buffer by F in each dimension (e.g. 0.25: a 4K frame becomes 960x540)
              --policies P,...  compare these chunk policies instead, e.g. 4K,1M+64K+4K
              --json            print the results as one JSON object instead of tables
              --graph FILE      write the mapping graph: FILE.dot as DOT, FILE.svg (or .png, .pdf) through Graphviz dot
              --no-progress     no progress bar on stderr (there is none when stderr is not a terminal)
              --no-warmup       skip the warm-up (every policy for one frame at 1/16 size, not reported) that
                                keeps the first policy's times from being a cold JIT's
              --print-scenario  print the %s scenario's JSON and exit
            """.formatted(name() + " " + synopsis(), demo ? "default" : "given");
    }

    /** The options of one invocation. */
    record Options(String file, int frames, double scale, List<ChunkPolicy> policies, boolean json, String graph,
                   boolean progress, boolean warmUp, boolean printScenario) {
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) {
        Options o;
        try {
            o = parse(args);
        } catch (IllegalArgumentException e) {
            err.println("vcmm " + name() + ": " + e.getMessage());
            err.print(usage());
            return 2;
        }
        if (o == null) {
            out.print(usage());
            return 0;
        }
        Scenario scenario;
        String text;
        try {
            if (demo) {
                text = Scenario.defaultText();
                scenario = ScenarioParser.parse(text, "(default scenario)");
            } else {
                text = Files.readString(Path.of(o.file()), StandardCharsets.UTF_8);
                if (MigrationScenario.isMigration(text)) {
                    return runMigration(MigrationScenario.parse(text, o.file()), text, o, out, err);
                }
                if (DemandPagingScenario.isDemandPaging(text)) {
                    return runDemandPaging(DemandPagingScenario.parse(text, o.file()), text, o, out, err);
                }
                scenario = ScenarioParser.parse(text, o.file());
            }
        } catch (IOException e) {
            err.println("vcmm run: cannot read " + o.file() + ": " + e);
            return 2;
        } catch (ScenarioParser.ScenarioException e) {
            err.println("vcmm " + name() + ": " + (demo ? "" : o.file() + ": ") + e.getMessage());
            return 2;
        }
        if (o.printScenario()) {
            out.print(text);
            return 0;
        }
        scenario = scenario.resized(o.frames(), o.scale());
        if (o.policies() != null) {
            scenario = scenario.withPolicies(o.policies());
        }
        return run(scenario, o, new ScenarioRunner(), out, err, true);
    }

    /**
     * Runs a live-migration scenario ({@link MigrationRunner}); of the options only {@code --print-scenario} applies.
     *
     * @return 0 if the copy equals the source at the end, 1 if not, 2 for an option that does not apply
     */
    private int runMigration(MigrationScenario m, String text, Options o, PrintStream out, PrintStream err) {
        if (o.printScenario()) {
            out.print(text);
            return 0;
        }
        if (o.json() || o.graph() != null || o.policies() != null || o.frames() > 0 || o.scale() != 1.0) {
            err.println("vcmm run: " + o.file() + " is a live-migration scenario: --json, --graph, --policies, --frames"
                + " and --scale do not apply");
            return 2;
        }
        MigrationRunner.Result r = MigrationRunner.run(m, out);
        out.flush();
        return r.mismatchedBytes() == 0 ? 0 : 1;
    }

    /**
     * Runs a demand-paging scenario ({@link DemandPagingRunner}); of the options only {@code --print-scenario} applies.
     *
     * @return 0 if every byte read was the handler's and no access failed, 1 if not, 2 for an option that does not apply
     */
    private int runDemandPaging(DemandPagingScenario d, String text, Options o, PrintStream out, PrintStream err) {
        if (o.printScenario()) {
            out.print(text);
            return 0;
        }
        if (o.json() || o.graph() != null || o.policies() != null || o.frames() > 0 || o.scale() != 1.0) {
            err.println("vcmm run: " + o.file() + " is a demand-paging scenario: --json, --graph, --policies, --frames"
                + " and --scale do not apply");
            return 2;
        }
        DemandPagingRunner.Result r = DemandPagingRunner.run(d, out);
        out.flush();
        return r.mismatchedBytes() == 0 && r.failed() == 0 && r.bytesRead() == d.bufferSize() ? 0 : 1;
    }

    /**
     * Runs {@code scenario} with {@code runner} and reports.
     *
     * @param hook whether to install the Ctrl-C shutdown hook
     * @return 0, 1 if a consumer read bytes its producer did not write, 130 if stopped
     */
    static int run(Scenario scenario, Options o, ScenarioRunner runner, PrintStream out, PrintStream err, boolean hook) {
        CountDownLatch reported = new CountDownLatch(1);
        Thread stopper = new Thread(() -> {
            runner.stop();
            try {
                reported.await(REPORT_WAIT_SECONDS, TimeUnit.SECONDS); // let the run print before the JVM halts
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "vcmm-stop");
        if (hook) {
            Runtime.getRuntime().addShutdownHook(stopper);
        }
        try {
            if (!o.json()) {
                ScenarioReport.header(scenario, out);
                out.flush();
            }
            ProgressBar bar = o.progress() && (err != System.err || isTerminal()) ? new ProgressBar(err) : null;
            ScenarioRunner.Result r = runner.run(scenario, bar, o.warmUp());
            if (bar != null) {
                bar.clear();
            }
            if (r.interrupted()) {
                err.println("vcmm: stopped; printing what was measured so far");
            }
            if (o.json()) {
                out.println(ScenarioReport.json(r));
            } else {
                ScenarioReport.print(r, out);
            }
            out.flush();
            if (o.graph() != null && !r.policies().isEmpty()) {
                ScenarioRunner.PolicyResult best = r.policies().stream()
                    .min(Comparator.comparingDouble(ScenarioRunner.PolicyResult::iotlbMissesPerMiB)).orElseThrow();
                writeGraph(best, Path.of(o.graph()), err);
            }
            boolean differ = r.policies().stream().anyMatch(p -> p.mismatches() > 0);
            return r.interrupted() ? 130 : differ ? 1 : 0;
        } finally {
            reported.countDown();
            if (hook) {
                try {
                    Runtime.getRuntime().removeShutdownHook(stopper);
                } catch (IllegalStateException shuttingDown) {
                    // Ctrl-C: the hook is running and waits for the latch counted down above
                }
            }
        }
    }

    /** @return whether the JVM's stderr is likely a terminal (the JDK tells only whether the console is one) */
    private static boolean isTerminal() {
        java.io.Console c = System.console();
        return c != null && c.isTerminal();
    }

    /**
     * Writes the mapping graph of {@code p}'s run: DOT for a {@code .dot} file, else through Graphviz {@code dot}
     * in the format the extension names; without {@code dot} on the PATH, the DOT next to it and how to render it.
     */
    static void writeGraph(ScenarioRunner.PolicyResult p, Path file, PrintStream err) {
        String name = file.getFileName().toString();
        int dotAt = name.lastIndexOf('.');
        String ext = dotAt < 0 ? "" : name.substring(dotAt + 1).toLowerCase(Locale.ROOT);
        try {
            if (ext.equals("dot") || ext.equals("gv")) {
                Files.writeString(file, p.dot(), StandardCharsets.UTF_8);
                err.printf("vcmm: wrote the mapping graph (policy %s, every buffer mapped) to %s%n", p.policy(), file);
                return;
            }
            Path dotFile = file.resolveSibling((dotAt < 0 ? name : name.substring(0, dotAt)) + ".dot");
            if (render(p.dot(), ext.isEmpty() ? "svg" : ext, file)) {
                err.printf("vcmm: wrote the mapping graph (policy %s, every buffer mapped) to %s%n", p.policy(), file);
                return;
            }
            Files.writeString(dotFile, p.dot(), StandardCharsets.UTF_8);
            err.printf("vcmm: Graphviz 'dot' is not on the PATH, so the mapping graph (policy %s) went to %s as DOT.%n"
                + "  render it with: dot -T%s %s -o %s%n"
                + "  get dot: apt install graphviz (Debian/Ubuntu), dnf install graphviz, brew install graphviz, or https://graphviz.org/download/%n",
                p.policy(), dotFile, ext.isEmpty() ? "svg" : ext, dotFile, file);
        } catch (IOException e) {
            err.println("vcmm: cannot write the graph to " + file + ": " + e.getMessage());
        }
    }

    /** @return whether Graphviz rendered {@code dot} into {@code file}; false if there is no {@code dot} */
    private static boolean render(String dot, String format, Path file) throws IOException {
        Process p;
        try {
            p = new ProcessBuilder("dot", "-T" + format, "-o", file.toString()).redirectErrorStream(true).start();
        } catch (IOException notFound) {
            return false;
        }
        try (OutputStream in = p.getOutputStream()) {
            in.write(dot.getBytes(StandardCharsets.UTF_8));
        }
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        try {
            if (p.waitFor() != 0) {
                throw new IOException("dot -T" + format + " failed: " + output.strip());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while dot ran", e);
        }
        return true;
    }

    /** @return the options, or {@code null} for {@code --help} */
    Options parse(List<String> args) {
        String file = null;
        int frames = 0;
        double scale = 1.0;
        List<ChunkPolicy> policies = null;
        boolean json = false;
        String graph = null;
        boolean progress = true;
        boolean warmUp = true;
        boolean print = false;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            switch (a) {
                case "-h", "--help" -> {
                    return null;
                }
                case "--json" -> json = true;
                case "--no-progress" -> progress = false;
                case "--no-warmup" -> warmUp = false;
                case "--print-scenario" -> print = true;
                case "--frames", "--scale", "--policies", "--graph" -> {
                    if (i + 1 >= args.size()) {
                        throw new IllegalArgumentException(a + " needs a value");
                    }
                    String v = args.get(++i);
                    switch (a) {
                        case "--frames" -> frames = positiveInt(a, v);
                        case "--scale" -> scale = scale(v);
                        case "--policies" -> policies = policies(v);
                        default -> graph = v;
                    }
                }
                default -> {
                    if (a.startsWith("-") || demo || file != null) {
                        throw new IllegalArgumentException("unexpected argument " + a);
                    }
                    file = a;
                }
            }
        }
        if (!demo && file == null) {
            throw new IllegalArgumentException("name the scenario file");
        }
        return new Options(file, frames, scale, policies, json, graph, progress, warmUp, print);
    }

    private static int positiveInt(String opt, String v) {
        try {
            int n = Integer.parseInt(v);
            if (n > 0) {
                return n;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException(opt + "=" + v + " must be a positive whole number");
    }

    private static double scale(String v) {
        try {
            double d = Double.parseDouble(v);
            if (d > 0 && d <= 4) {
                return d;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException("--scale=" + v + " must be a number in (0, 4]");
    }

    private static List<ChunkPolicy> policies(String v) {
        List<ChunkPolicy> out = new ArrayList<>();
        for (String s : v.split(",")) {
            try {
                ChunkPolicy p = ChunkPolicy.parse(s);
                if (out.contains(p)) {
                    throw new IllegalArgumentException("--policies: " + p + " is listed twice");
                }
                out.add(p);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("--policies: " + e.getMessage());
            }
        }
        return out;
    }

    /** A one-line progress bar redrawn with {@code \r}, at most ten times a second. */
    static final class ProgressBar implements ScenarioRunner.Progress {
        private static final int WIDTH = 30;
        private final PrintStream err;
        private long last;
        private int drawn;

        ProgressBar(PrintStream err) {
            this.err = err;
        }

        @Override
        public void step(ChunkPolicy policy, long done, long total, int frame) {
            long now = System.nanoTime();
            if (done < total && drawn > 0 && now - last < 100_000_000L) {
                return;
            }
            last = now;
            int filled = (int) (WIDTH * done / Math.max(1, total));
            String line = String.format("\r[%s%s] %3d%%  policy %-15s frame %d", "#".repeat(filled), "-".repeat(WIDTH - filled),
                100 * done / Math.max(1, total), policy, frame + 1);
            drawn = Math.max(drawn, line.length());
            err.print(line);
            err.flush();
        }

        /** Erases the bar. */
        void clear() {
            if (drawn > 0) {
                err.print("\r" + " ".repeat(drawn) + "\r");
                err.flush();
            }
        }
    }
}
