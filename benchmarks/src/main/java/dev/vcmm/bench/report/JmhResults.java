package dev.vcmm.bench.report;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The results of one JMH run, read from the console output JMH prints (or the {@code -rf text} file): the
 * summary table at the end ({@code Benchmark (param)... Mode Cnt Score Error Units}) and the lines our
 * benchmarks print themselves in the form {@code [Name] key=value: N what} (e.g. the heap bytes per live
 * buffer of {@code GraphScaleBenchmark}).
 *
 * <p>Immutable once read; not tied to any file after {@link #read}.
 */
public final class JmhResults {

    /** One row of the summary table: a benchmark method (with a {@code :secondary} suffix for secondary
     *  metrics), its parameters in table order, and its score. */
    public record Row(String benchmark, Map<String, String> params, double score, String unit) {
        /** @return whether every {@code key=value} of {@code want} is among this row's parameters */
        boolean matches(Map<String, String> want) {
            for (Map.Entry<String, String> e : want.entrySet()) {
                if (!e.getValue().equals(params.get(e.getKey()))) {
                    return false;
                }
            }
            return true;
        }
    }

    private static final Pattern NOTE = Pattern.compile("^\\[(\\w+)] ([^:]+): ([0-9.]+) (.+)$");

    private final String name;
    private final List<Row> rows;
    private final List<String> notes;

    private JmhResults(String name, List<Row> rows, List<String> notes) {
        this.name = name;
        this.rows = List.copyOf(rows);
        this.notes = List.copyOf(notes);
    }

    /**
     * Reads the output of one JMH run.
     *
     * @throws IllegalArgumentException if the file has no summary table
     * @throws UncheckedIOException if it cannot be read
     */
    public static JmhResults read(Path file) {
        List<String> lines;
        try {
            lines = Files.readAllLines(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read JMH results " + file, e);
        }
        return parse(file.getFileName().toString(), lines);
    }

    /** Parses the lines of one JMH run's output; {@code name} only names it in messages. */
    static JmhResults parse(String name, List<String> lines) {
        int header = -1;
        for (int i = lines.size() - 1; i >= 0; i--) {
            if (lines.get(i).startsWith("Benchmark ") && lines.get(i).contains("Score")) {
                header = i;
                break;
            }
        }
        if (header < 0) {
            throw new IllegalArgumentException(name + ": no JMH summary table (a line starting with \"Benchmark\")");
        }
        List<String> paramNames = new ArrayList<>();
        for (String token : lines.get(header).trim().split("\\s+")) {
            if (token.startsWith("(") && token.endsWith(")")) {
                paramNames.add(token.substring(1, token.length() - 1));
            }
        }
        List<Row> rows = new ArrayList<>();
        for (int i = header + 1; i < lines.size(); i++) {
            String line = lines.get(i).trim();
            if (line.isEmpty() || line.contains(":stack") || line.contains(":·")) {
                continue;
            }
            String[] t = line.split("\\s+");
            if (t.length < 1 + paramNames.size() + 4) {
                continue;
            }
            Map<String, String> params = new LinkedHashMap<>();
            for (int p = 0; p < paramNames.size(); p++) {
                params.put(paramNames.get(p), t[1 + p]);
            }
            // after the params: Mode Cnt Score [± Error] Units, or Mode Cnt "≈" 0 Units
            int s = 1 + paramNames.size() + 2;
            if (t[s].equals("≈")) {
                rows.add(new Row(t[0], params, 0, t[t.length - 1]));
                continue;
            }
            try {
                rows.add(new Row(t[0], params, Double.parseDouble(t[s]), t[t.length - 1]));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(name + ": cannot read the score of \"" + line + "\"", e);
            }
        }
        List<String> notes = new ArrayList<>();
        for (String line : lines) {
            if (NOTE.matcher(line).matches()) {
                notes.add(line);
            }
        }
        return new JmhResults(name, rows, notes);
    }

    /**
     * The score of one benchmark (the last part of its name, e.g. {@code "MapUnmapBenchmark.mapUnmapOne"})
     * with the given parameters ({@code "format=x86-64", "size=4k"}).
     *
     * @throws IllegalArgumentException if no row or several rows match
     */
    public double score(String benchmark, String... params) {
        Map<String, String> want = new LinkedHashMap<>();
        for (String p : params) {
            int eq = p.indexOf('=');
            want.put(p.substring(0, eq), p.substring(eq + 1));
        }
        Row found = null;
        for (Row r : rows) {
            if ((r.benchmark().equals(benchmark) || r.benchmark().endsWith("." + benchmark)) && r.matches(want)) {
                if (found != null) {
                    throw new IllegalArgumentException(name + ": several rows match " + benchmark + " " + want);
                }
                found = r;
            }
        }
        if (found == null) {
            throw new IllegalArgumentException(name + ": no row " + benchmark + " " + want);
        }
        return found.score();
    }

    /**
     * The largest value among the lines {@code [source] key: N what} with this source, key and what
     * (e.g. {@code note("GraphScaleBenchmark", "live=100000", "heap bytes per live buffer")}).
     *
     * @throws IllegalArgumentException if there is none
     */
    public double note(String source, String key, String what) {
        double max = Double.NaN;
        for (String line : notes) {
            Matcher m = NOTE.matcher(line);
            if (m.matches() && m.group(1).equals(source) && m.group(2).equals(key) && m.group(4).equals(what)) {
                double v = Double.parseDouble(m.group(3));
                max = Double.isNaN(max) ? v : Math.max(max, v);
            }
        }
        if (Double.isNaN(max)) {
            throw new IllegalArgumentException(name + ": no line [" + source + "] " + key + ": N " + what);
        }
        return max;
    }

    /** @return the rows of the summary table, in order */
    public List<Row> rows() {
        return rows;
    }
}
