package dev.vcmm.cli;

import java.io.PrintStream;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The application entry point behind the {@code ./vcmm} launcher: {@code java -jar vcmm-cli.jar COMMAND
 * [ARGS]}. It only dispatches; each subcommand is a {@link Command}.
 *
 * <p><b>Thread-safety:</b> {@link #run} is meant for one thread at a time (it writes to the streams it
 * is given); commands keep no shared state.
 */
public final class Main {

    private static final Map<String, Command> COMMANDS = new LinkedHashMap<>();

    static {
        register(ScenarioCommand.demo());
        register(ScenarioCommand.run());
        register(new AllocDemoCommand());
        register(new PagetableCommand());
        register(new StatCommand());
    }

    private Main() {
    }

    private static void register(Command c) {
        COMMANDS.put(c.name(), c);
    }

    /** Runs the command named by {@code args[0]} and exits with its code. */
    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /**
     * Runs the command named by {@code args[0]}.
     *
     * @return its exit code; 2 with the usage on {@code err} for no, {@code help} or an unknown command;
     *         1 with the message on {@code err} if the command throws
     */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length == 0 || !COMMANDS.containsKey(args[0])) {
            if (args.length > 0 && !isHelp(args[0])) {
                err.println("vcmm: unknown command '" + args[0] + "'");
            }
            err.print(usage());
            return 2;
        }
        Command c = COMMANDS.get(args[0]);
        List<String> rest = Arrays.asList(args).subList(1, args.length);
        try {
            return c.run(rest, out, err);
        } catch (RuntimeException e) {
            err.println("vcmm " + c.name() + ": " + e.getClass().getSimpleName() + ": " + e.getMessage());
            return 1;
        } finally {
            out.flush();
        }
    }

    /** @return the usage text, one line per command. */
    static String usage() {
        StringBuilder sb = new StringBuilder("usage: vcmm COMMAND [ARGS]\n\ncommands:\n");
        for (Command c : COMMANDS.values()) {
            String head = c.name() + (c.synopsis().isEmpty() ? "" : " " + c.synopsis());
            sb.append(String.format("  %-22s %s%n", head, c.summary()));
        }
        sb.append(String.format("  %-22s %s%n", "help", "print this text"));
        return sb.toString();
    }

    private static boolean isHelp(String arg) {
        return arg.equals("help") || arg.equals("-h") || arg.equals("--help");
    }
}
