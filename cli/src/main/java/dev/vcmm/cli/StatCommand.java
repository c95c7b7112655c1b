package dev.vcmm.cli;

import dev.vcmm.ffm.PoolCounters;
import dev.vcmm.ffm.VcmmCounters;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * {@code vcmm stat [--once] [--interval MS] [PID|FILE|DIR]}: prints the live counters of {@code SegmentPool}s and
 * {@code Vcmm}s from their counter files (see {@link PoolCounters} and {@link VcmmCounters}), as Aeron's
 * {@code AeronStat} prints a media driver's: once a second until Ctrl-C, clearing the screen between rounds, or once
 * with {@code --once}. A directory (by default {@link PoolCounters#DEFAULT_DIRECTORY}) shows every counter file in
 * it; a PID (digits that name no existing file) shows the files in the default directory that process wrote. Each
 * file's header line says {@code pool 'NAME'} or {@code vcmm 'NAME'}. Needs
 * {@code --add-exports java.base/jdk.internal.misc=ALL-UNNAMED} (Agrona's buffers); the launcher passes it.
 *
 * <p><b>Thread-safety:</b> stateless; {@link #run} uses only local state.
 */
final class StatCommand implements Command {

    private static final String CLEAR = "\u001b[H\u001b[2J";

    @Override
    public String name() {
        return "stat";
    }

    @Override
    public String synopsis() {
        return "[--once] [--interval MS] [PID|FILE|DIR]";
    }

    @Override
    public String summary() {
        return "print the live counters of SegmentPools and Vcmms (those opened with counters on) every second";
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) {
        boolean once = false;
        long interval = 1000;
        Path target = null;
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.equals("--once")) {
                once = true;
            } else if (a.equals("--interval") && i + 1 < args.size()) {
                try {
                    interval = Long.parseLong(args.get(++i));
                } catch (NumberFormatException e) {
                    interval = -1;
                }
                if (interval <= 0) {
                    err.println("vcmm stat: --interval=" + args.get(i) + " must be a positive number of milliseconds");
                    return 2;
                }
            } else if (a.startsWith("-") || target != null) {
                err.println("vcmm stat: unexpected argument '" + a + "'");
                err.println("usage: vcmm stat " + synopsis());
                return 2;
            } else {
                target = Path.of(a);
            }
        }
        long pid = -1;
        if (target != null && !Files.exists(target) && target.toString().matches("[0-9]{1,18}")) {
            pid = Long.parseLong(target.toString()); // a PID: its files in the default directory
            target = null;
        }
        Path where = target == null ? PoolCounters.DEFAULT_DIRECTORY : target;
        if (target != null && !Files.exists(target)) {
            err.println("vcmm stat: no such file or directory: " + target);
            return 1;
        }
        if (once) {
            return printOnce(where, pid, out, err) ? 0 : 1;
        }
        while (true) {
            StringBuilderStream round = new StringBuilderStream();
            printOnce(where, pid, round.stream, round.stream);
            out.print(CLEAR + round.text());
            out.flush();
            try {
                Thread.sleep(interval);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return 0;
            }
        }
    }

    /** @return whether some pool's counters were printed */
    static boolean printOnce(Path where, PrintStream out, PrintStream err) {
        return printOnce(where, -1, out, err);
    }

    /**
     * Prints every counter file of {@code where} (a directory, or one file), only those of process {@code pid} if it
     * is not negative.
     *
     * @return whether some file's counters were printed
     */
    static boolean printOnce(Path where, long pid, PrintStream out, PrintStream err) {
        List<Path> files = Files.isDirectory(where) ? PoolCounters.list(where) : List.of(where);
        out.println(Instant.now() + " - vcmm stat " + (pid >= 0 ? "pid " + pid + " in " : "") + where);
        if (files.isEmpty()) {
            err.println("no counter files (*" + PoolCounters.SUFFIX + ") in " + where
                + ": open a SegmentPool with SegmentPool.builder(...).counters(dir), or VcmmCounters.open(vcmm, dir)");
            return false;
        }
        boolean any = false;
        for (Path f : files) {
            PoolCounters.View v;
            try {
                v = PoolCounters.map(f);
            } catch (RuntimeException e) { // deleted meanwhile, or not a counters file
                err.println(f + ": " + e.getMessage());
                continue;
            }
            try (v) {
                if (pid >= 0 && v.pid() != pid) {
                    continue;
                }
                Optional<ProcessHandle> p = ProcessHandle.of(v.pid());
                String state = v.closed() ? "closed" : p.isPresent() && p.get().isAlive() ? "running" : "process gone";
                out.println(v.kind() + " '" + v.pool() + "' pid " + v.pid() + " (" + state + ") started "
                    + Instant.ofEpochMilli(v.startMillis()) + " " + f);
                List<String[]> rows = new ArrayList<>(v.rows());
                for (String[] r : rows) {
                    out.printf("%3s: %,20d - %s%n", r[0], Long.parseLong(r[2]), r[1]);
                }
                any = true;
            }
        }
        if (!any && pid >= 0) {
            err.println("no counter files of pid " + pid + " in " + where);
        }
        return any;
    }

    /** One round's text, printed at once so that the screen does not flicker. */
    private static final class StringBuilderStream {
        final java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
        final PrintStream stream = new PrintStream(bytes, true, java.nio.charset.StandardCharsets.UTF_8);

        String text() {
            return bytes.toString(java.nio.charset.StandardCharsets.UTF_8);
        }
    }
}
