package dev.vcmm.cli;

import java.io.PrintStream;
import java.util.List;

/**
 * One subcommand of {@code ./vcmm}: {@code demo}, {@code run SCENARIO.json}, {@code alloc-demo}, {@code pagetable}. Register a new one in {@link Main}.
 *
 * <p><b>Thread-safety:</b> implementations are run once, from the main thread.
 */
interface Command {

    /** @return the word that selects it on the command line. */
    String name();

    /** @return the argument synopsis for the usage text, empty if none. */
    default String synopsis() {
        return "";
    }

    /** @return a one-line description for the usage text. */
    String summary();

    /**
     * Runs the command.
     *
     * @param args the arguments after the command's name
     * @param out  where results go
     * @param err  where diagnostics go
     * @return the process exit code: 0 success, 1 failure, 2 bad usage
     */
    int run(List<String> args, PrintStream out, PrintStream err);
}
