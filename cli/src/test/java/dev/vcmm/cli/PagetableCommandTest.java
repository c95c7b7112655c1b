package dev.vcmm.cli;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.pagetable.Walker;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.heap.HeapPhysicalMemory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Builds images with the command and walks them with a walker over memory loaded from the file alone. */
class PagetableCommandTest {

    private final CliCapture cli = new CliCapture();

    @TempDir
    Path dir;

    /** Loads the image at its base into fresh memory and walks it: nothing but the file is consulted. */
    private static WalkResult walkImage(PageTableFormat f, Path image, long base, long root, long va) throws Exception {
        byte[] bytes = Files.readAllBytes(image);
        try (HeapPhysicalMemory m = HeapPhysicalMemory.create(base, Math.max(4096, (bytes.length + 4095) & -4096L))) {
            m.copyIn(bytes, 0, base, bytes.length);
            return Walker.translate(f, m, root, va);
        }
    }

    private static long field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\":\"?(0x[0-9a-f]+|\\d+)\"?").matcher(json);
        assertTrue(m.find(), () -> name + " in " + json);
        String v = m.group(1);
        return v.startsWith("0x") ? Long.parseUnsignedLong(v.substring(2), 16) : Long.parseLong(v);
    }

    /** {@code u} where the format has no privileged-only mappings (Arm stage 2), else nothing. */
    private static String userIfNeeded(PageTableFormat f) {
        return PagetableCommand.defaultAttributes(f).user() ? "u" : "";
    }

    @Test
    void shouldWriteAnImageEveryFormatCanBeWalkedFrom() throws Exception {
        for (PageTableFormat f : PageTableFormats.everyFormat()) {
            cli.resetOut();
            long page = f.leafSizes().getLast().size();
            Path image = dir.resolve(f.name() + ".img");
            int rc = cli.run("pagetable", "--format", f.name(), "--map", "0x200000:0x80000000:2M:rwx" + userIfNeeded(f),
                "--map", "0x10000:0x9000_0000:64K:r--u", "--map", (3 * page) + ":" + page + ":" + page, "--pt-base", "0x8000000",
                "--out", image.toString());
            assertEquals(0, rc, f.name() + ": " + cli.err());
            String json = cli.out().strip();
            assertTrue(json.startsWith("{\"format\":\"" + f.name() + "\""), json);
            assertEquals(0x800_0000L, field(json, "base"));
            long root = field(json, "root");
            assertEquals(Files.size(image), field(json, "bytes"));
            WalkResult.Translation t = (WalkResult.Translation) walkImage(f, image, 0x800_0000L, root, 0x200000 + 42);
            assertEquals(0x8000_0000L + 42, t.pa(), f.name());
            assertTrue(t.attributes().execute(), f.name());
            WalkResult.Translation u = (WalkResult.Translation) walkImage(f, image, 0x800_0000L, root, 0x1_0123);
            assertEquals(0x9000_0123L, u.pa(), f.name());
            assertTrue(u.attributes().user() && !u.attributes().write(), f.name());
            assertEquals(page + 8, ((WalkResult.Translation) walkImage(f, image, 0x800_0000L, root, 3 * page + 8)).pa());
            assertFalse(walkImage(f, image, 0x800_0000L, root, 3 * page - 1).isMapped(), f.name());
        }
    }

    @Test
    void shouldReadMappingsFromAFile() throws Exception {
        Path maps = dir.resolve("maps.txt");
        Files.writeString(maps, "# boot mappings\n0x0:0x40000000:1G:rwx\n\n0x40000000:0x0:4K:r--  # a page\n");
        Path image = dir.resolve("a.img");
        assertEquals(0, cli.run("pagetable", "--format", "arm64-4k", "--map-file", maps.toString(), "--out", image.toString()), cli.err());
        long root = field(cli.out(), "root");
        assertEquals(0x4000_1234L, ((WalkResult.Translation) walkImage(Arm64Lpae4kFormat.INSTANCE, image,
            PagetableCommand.DEFAULT_PT_BASE, root, 0x1234)).pa());
        assertEquals(1L << 30, ((WalkResult.Translation) walkImage(Arm64Lpae4kFormat.INSTANCE, image,
            PagetableCommand.DEFAULT_PT_BASE, root, 0x1234)).leafSize());
    }

    @Test
    void shouldNameTheBadMapping() {
        Path image = dir.resolve("x.img");
        assertEquals(2, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x0:0x0:8K", "--map", "0x1000:0x5000:4K",
            "--out", image.toString()));
        assertTrue(cli.err().contains("#2") && cli.err().contains("overlaps") && cli.err().contains("#1"), cli.err());
        cli.resetErr();
        assertEquals(2, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x1800:0x0:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("'0x1800:0x0:4K'") && cli.err().contains("multiples"), cli.err());
        cli.resetErr();
        assertEquals(2, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x1000000000000:0x0:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("48-bit"), cli.err());
        cli.resetErr();
        assertEquals(2, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x0:zz:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("PA=zz"), cli.err());
        cli.resetErr();
        assertEquals(2, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x0:0x0:4K:rwz", "--out", image.toString()));
        cli.resetErr();
        assertEquals(2, cli.run("pagetable", "--map", "0x0:0x0:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("--format is required"), cli.err());
        cli.resetErr();
        assertEquals(2, cli.run("pagetable", "--format", "nope", "--map", "0x0:0x0:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("arm64-4k"), "lists the known formats: " + cli.err());
        assertFalse(Files.exists(image), "no image written for refused input");
    }

    @Test
    void shouldExitTwoForEveryUsageErrorWithTheUsageText() throws Exception {
        Path image = dir.resolve("u.img");
        Path unreadable = dir.resolve("missing.txt");
        String[][] usageErrors = {
            {"--format"},                                                        // an option without its value
            {"--format", "arm64-4k", "--bogus", "1", "--map", "0:0:4K", "--out", image.toString()},
            {"--format", "arm64-4k", "--out", image.toString()},                  // no mapping
            {"--format", "arm64-4k", "--map", "0:0:4K"},                          // no --out
            {"--format", "nope", "--map", "0:0:4K", "--out", image.toString()},   // unknown format
            {"--format", "arm64-4k", "--map", "0:0:4K:rwz", "--out", image.toString()},
            {"--format", "arm64-4k", "--map", "0:0:0", "--out", image.toString()},
            {"--format", "arm64-4k", "--map", "0:0:0x7fffffffffffffffG", "--out", image.toString()}, // overflows
            {"--format", "arm64-4k", "--map-file", unreadable.toString(), "--out", image.toString()},
            {"--format", "arm64-4k", "--map", "0:0:4K", "--pt-base", "0x123", "--out", image.toString()},
            {"--format", "arm64-4k", "--map", "0:0:4K", "--pt-size", "0", "--out", image.toString()},
            {"--format", "arm64-4k", "--map", "0:0xFFFFFFFFFFFFF000:8K", "--out", image.toString()},
            {"--format", "x86-64", "--map", "0:0x8000000000000000:4K", "--out", image.toString()},
        };
        for (String[] args : usageErrors) {
            cli.resetErr();
            String[] full = new String[args.length + 1];
            full[0] = "pagetable";
            System.arraycopy(args, 0, full, 1, args.length);
            assertEquals(2, cli.run(full), String.join(" ", args) + " -> " + cli.err());
            assertTrue(cli.err().startsWith("vcmm pagetable: ") && cli.err().contains("usage: vcmm pagetable"),
                String.join(" ", args) + " -> " + cli.err());
        }
        assertFalse(Files.exists(image), "no image written for refused input");
        try (var files = Files.list(dir)) {
            assertEquals(0, files.count(), "and no temporary file either");
        }
    }

    @Test
    void shouldNotWrapThePhysicalRangeCheckForAddressesFrom2To63() {
        Path image = dir.resolve("wrap.img");
        // 0xFFFF_FFFF_FFFF_F000 + 8K wraps to 0x1000: an overflowing check would let it through
        assertEquals(2, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x0:0xFFFFFFFFFFFFF000:8K", "--out", image.toString()));
        assertTrue(cli.err().contains("physical range does not fit the 48-bit output addresses"), cli.err());
        assertTrue(PagetableCommand.fitsUnsigned(0xFFFF_FFFF_FFFF_F000L, 0x1000, 64), "the last page of a 64-bit space");
        assertFalse(PagetableCommand.fitsUnsigned(0xFFFF_FFFF_FFFF_F000L, 0x2000, 64), "one page past it wraps");
        assertFalse(PagetableCommand.fitsUnsigned(0x8000_0000_0000_0000L, 0x1000, 52));
        assertTrue(PagetableCommand.fitsUnsigned((1L << 52) - 0x1000, 0x1000, 52));
        assertFalse(PagetableCommand.fitsUnsigned((1L << 52) - 0x1000, 0x2000, 52));
        assertTrue(PagetableCommand.fitsUnsigned(0, 1L << 40, 40));
    }

    @Test
    void shouldExitOneWhenThePageTableMemoryRunsOutOrTheImageCannotBeWritten() throws Exception {
        Path image = dir.resolve("r.img");
        // 4 KiB of page-table memory holds the root and nothing more
        assertEquals(1, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x0:0x0:4K", "--pt-size", "4K", "--out", image.toString()));
        assertTrue(cli.err().contains("--pt-size") && !cli.err().contains("usage:"), cli.err());
        assertFalse(Files.exists(image));
        cli.resetErr();
        Path directory = Files.createDirectory(dir.resolve("a-directory"));
        assertEquals(1, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x0:0x0:4K", "--out", directory.toString()));
        assertTrue(cli.err().contains("cannot write the image to " + directory), cli.err());
        cli.resetErr();
        assertEquals(1, cli.run("pagetable", "--format", "arm64-4k", "--map", "0x0:0x0:4K", "--out", dir.resolve("no/such/dir.img").toString()));
        assertTrue(cli.err().contains("cannot write the image"), cli.err());
        try (var files = Files.list(dir)) {
            assertEquals(List.of(directory), files.toList(), "no temporary file left behind");
        }
    }

    @Test
    void shouldLeaveTheOldImageIntactAndNoTemporaryFileWhenAWriteFailsHalfway() throws Exception {
        Path image = dir.resolve("boot.img");
        byte[] old = "the old image".getBytes(StandardCharsets.UTF_8);
        Files.write(image, old);
        try (HeapPhysicalMemory m = HeapPhysicalMemory.create(0x8000_0000L, 64 << 10)) {
            m.fill(0x8000_0000L, 64 << 10, (byte) 7);
            // 192 KiB asked of a 64 KiB memory: the first 64 KiB are written, then the second read fails
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> PagetableCommand.writeImage(m, 0x8000_0000L, 192 << 10, image));
            assertTrue(e.getMessage().contains("0x80010000"), e.getMessage());
            assertArrayEquals(old, Files.readAllBytes(image), "the old image is intact");
            try (var files = Files.list(dir)) {
                assertEquals(List.of(image), files.toList(), "no temporary file left behind");
            }
            PagetableCommand.writeImage(m, 0x8000_0000L, 64 << 10, image); // and a whole write replaces it
            byte[] expected = new byte[64 << 10];
            java.util.Arrays.fill(expected, (byte) 7);
            assertArrayEquals(expected, Files.readAllBytes(image));
            try (var files = Files.list(dir)) {
                assertEquals(List.of(image), files.toList());
            }
        }
    }

    @Test
    void shouldParseNumbers() {
        assertEquals(0x1000, PagetableCommand.parseNumber("4K", "n"));
        assertEquals(0x2000_0000L, PagetableCommand.parseNumber("0x200M", "n"));
        assertEquals(3L << 30, PagetableCommand.parseNumber("3G", "n"));
        assertEquals(0xFFFF_FFFF_FFFF_F000L, PagetableCommand.parseNumber("0xffff_ffff_ffff_f000", "n"));
        assertEquals(123, PagetableCommand.parseNumber("123", "n"));
    }
}
