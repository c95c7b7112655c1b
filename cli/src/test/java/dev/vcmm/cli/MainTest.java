package dev.vcmm.cli;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Runs the commands in-process. The backend is whichever {@code ServiceLoader} prefers: the core's
 * simple test backend (from the core test-jar) until the ffm backend registers itself, then that one.
 */
class MainTest {

    private final ByteArrayOutputStream outBytes = new ByteArrayOutputStream();
    private final ByteArrayOutputStream errBytes = new ByteArrayOutputStream();

    private int run(String... args) {
        return Main.run(args, new PrintStream(outBytes, true, StandardCharsets.UTF_8),
            new PrintStream(errBytes, true, StandardCharsets.UTF_8));
    }

    private String out() {
        return outBytes.toString(StandardCharsets.UTF_8);
    }

    private String err() {
        return errBytes.toString(StandardCharsets.UTF_8);
    }

    @Test
    void shouldRunTheAllocDemoAndEndCoalesced() {
        assertEquals(0, run("alloc-demo"), err() + out());
        String out = out();
        for (String s : new String[] {"4K pages only", "VCMM 16M+1M+64K+4K", "HUGE 1G+2M+4K", "VCMM contiguous",
            "1080p ARGB frame", "4K UHD ARGB frame", "3 MiB", "100 KiB", "8,294,400", "33,177,600",
            "allocator after allocating:", "allocator after freeing everything:", "largest free block",
            "OK: every block coalesced back; the largest free block is 1G again"}) {
            assertTrue(out.contains(s), "missing '" + s + "' in\n" + out);
        }
        // 2025 pages as policy chunks, whatever the backend: 7x1M + 14x64K + 9x4K
        assertTrue(out.lines().anyMatch(l -> l.startsWith("VCMM contiguous") && l.contains("1080p")
            && l.contains("7x1M 14x64K 9x4K")), out);
        assertTrue(out.lines().anyMatch(l -> l.startsWith("4K pages only") && l.contains("1080p") && l.contains(" 2025 ")
            && l.contains("2025x4K")), out);
        assertEquals("", err());
    }

    @Test
    void shouldRejectArgumentsToAllocDemo() {
        assertEquals(2, run("alloc-demo", "extra"));
        assertTrue(err().contains("takes no arguments"), err());
    }

    @Test
    void shouldPrintUsageOnStderrForHelpNothingOrUnknown() {
        for (String[] args : new String[][] {{}, {"help"}, {"--help"}}) {
            outBytes.reset();
            errBytes.reset();
            assertEquals(2, run(args));
            assertTrue(err().startsWith("usage: vcmm COMMAND"), err());
            assertTrue(err().contains("  demo "), err());
            assertEquals("", out());
        }
        errBytes.reset();
        assertEquals(2, run("frobnicate"));
        assertTrue(err().startsWith("vcmm: unknown command 'frobnicate'"), err());
        assertTrue(err().contains("usage:"), err());
    }

    @Test
    void shouldFormatSizes() {
        assertEquals("4K", AllocDemoCommand.size(4096));
        assertEquals("1G", AllocDemoCommand.size(1L << 30));
        assertEquals("7.9M", AllocDemoCommand.size(8_294_400));
        assertEquals("100K", AllocDemoCommand.size(100 << 10));
        assertEquals("0B", AllocDemoCommand.size(0));
    }
}
