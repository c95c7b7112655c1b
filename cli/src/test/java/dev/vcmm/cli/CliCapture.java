package dev.vcmm.cli;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * Runs the launcher's {@link Main} in-process and keeps what it printed, for the cli tests.
 *
 * <p><b>Thread-safety:</b> for one test thread.
 */
final class CliCapture {

    private final ByteArrayOutputStream outBytes = new ByteArrayOutputStream();
    private final ByteArrayOutputStream errBytes = new ByteArrayOutputStream();

    /** {@return the exit status of {@code vcmm args...}, its output appended to what was printed before} */
    int run(String... args) {
        return Main.run(args, new PrintStream(outBytes, true, StandardCharsets.UTF_8),
            new PrintStream(errBytes, true, StandardCharsets.UTF_8));
    }

    /** {@return the exit status of {@code vcmm args...}, after forgetting everything printed before} */
    int runFresh(String... args) {
        resetOut();
        resetErr();
        return run(args);
    }

    /** {@return what was printed on standard output since the last reset} */
    String out() {
        return outBytes.toString(StandardCharsets.UTF_8);
    }

    /** {@return what was printed on standard error since the last reset} */
    String err() {
        return errBytes.toString(StandardCharsets.UTF_8);
    }

    /** Forgets the standard output printed so far. */
    void resetOut() {
        outBytes.reset();
    }

    /** Forgets the standard error printed so far. */
    void resetErr() {
        errBytes.reset();
    }
}
