package dev.vcmm.cli;

import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code vcmm pagetable} with unmaps, and {@code vcmm pagetable dump}: an image exported then dumped gives back
 * the mappings that were asked for, in every format, including tables shaped by partial unmaps (split blocks
 * and runs).
 */
class PagetableDumpTest {

    private final CliCapture cli = new CliCapture();

    @TempDir
    Path dir;

    private static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\":\"?([^\",}]+)\"?").matcher(json);
        assertTrue(m.find(), () -> name + " in " + json);
        return m.group(1);
    }

    /** va, pa, size, perms (as Attributes.toString) of each dumped range. */
    private static List<String> ranges(String json) {
        List<String> all = new ArrayList<>();
        Matcher m = Pattern.compile("\\{\"va\":\"(0x[0-9a-f]+)\",\"pa\":\"(0x[0-9a-f]+)\",\"size\":(\\d+),\"perms\":\"([^\"]+)\",\"cache\":\"([A-Z_]+)\"")
            .matcher(json);
        while (m.find()) {
            all.add(m.group(1) + " " + m.group(2) + " " + m.group(3) + " " + m.group(4) + "/" + m.group(5));
        }
        return all;
    }

    private static String range(long va, long pa, long size, Attributes a) {
        return String.format("0x%x 0x%x %d %s", va, pa, size, a);
    }

    /**
     * Per format: a 1 GiB mapping with one smallest page unmapped from its middle (a block or run split down to
     * the last level), and a 2 MiB user read-only mapping without its first page; exported, dumped, compared.
     */
    @Test
    void shouldGiveBackTheMappingsOfEveryFormatAfterPartialUnmaps() throws Exception {
        List<PageTableFormat> formats = new ArrayList<>(PageTableFormats.everyFormat());
        formats.add(PageTableFormats.byName("arm64-64k", 42));
        formats.add(PageTableFormats.byName("arm64-4k-va39"));
        formats.add(PageTableFormats.byName("arm64-s2-4k-ipa44"));
        for (PageTableFormat f : formats) {
            long page = f.leafSizes().getLast().size();
            Attributes rw = PagetableCommand.defaultAttributes(f);
            Attributes ru = Attributes.parse("r--u");
            Path image = dir.resolve(f.name() + ".img");
            Path maps = dir.resolve(f.name() + ".maps");
            Files.writeString(maps, "map 0x40000000:0x80000000:1G\n"
                + "unmap " + (0x5000_0000L) + ":" + page + "   # a hole in the middle of the gigabyte\n"
                + "0x200000:0x90000000:2M:r--u\n");
            assertEquals(0, cli.runFresh("pagetable", "--format", f.name(), "--map-file", maps.toString(),
                "--unmap", "0x200000:" + page, "--pt-base", "0x8000000", "--out", image.toString()), f.name() + ": " + cli.err());
            String root = field(cli.out(), "root");
            assertEquals(0, cli.runFresh("pagetable", "dump", "--format", f.name(), "--image", image.toString(), "--pt-base", "0x8000000",
                "--root", root, "--json"), f.name() + ": " + cli.err());
            String json = cli.out();
            assertEquals(List.of(
                range(0x20_0000L + page, 0x9000_0000L + page, (2L << 20) - page, ru),
                range(0x4000_0000L, 0x8000_0000L, 0x1000_0000L, rw),
                range(0x5000_0000L + page, 0x9000_0000L + page, 0x3000_0000L - page, rw)), ranges(json), f.name() + ": " + json);
            assertTrue(json.contains("\"faults\":[]"), json);
        }
    }

    @Test
    void shouldDumpTheUpperHalfAndListTheLeafSizes() throws Exception {
        Path image = dir.resolve("ttbr1.img");
        assertEquals(0, cli.runFresh("pagetable", "--format", "arm64-16k-ttbr1", "--map", "0xFFFF800000000000:0x80000000:34M:r-x",
            "--out", image.toString()), cli.err());
        String root = field(cli.out(), "root");
        assertEquals(0, cli.runFresh("pagetable", "dump", "--format", "arm64-16k-ttbr1", "--image", image.toString(),
            "--pt-base", "0x40000000", "--root", root), cli.err());
        assertEquals("va=0xffff800000000000 pa=0x80000000 size=" + (34L << 20) + " perms=r-x/WRITE_BACK leaves=2M@L3x128,32M@L2\n",
            cli.out());
    }

    @Test
    void shouldReportAnAccessFlagFaultInAnImageBuiltElsewhere() throws Exception {
        Path image = dir.resolve("af.img");
        assertEquals(0, cli.runFresh("pagetable", "--format", "arm64-4k", "--map", "0x5000:0x12345000:4K", "--out", image.toString()), cli.err());
        String root = field(cli.out(), "root");
        byte[] bytes = Files.readAllBytes(image);
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        int found = 0;
        for (int at = 0; at < bytes.length; at += 8) {
            long w = b.getLong(at);
            if ((w & 0x0000_FFFF_FFFF_F003L) == 0x1234_5003L) { // the page descriptor: OA 0x12345000, bits 1:0 = 11
                b.putLong(at, w & ~(1L << 10)); // AF = 0, as firmware that relies on hardware AF updates may leave it
                found++;
            }
        }
        assertEquals(1, found);
        Files.write(image, bytes);
        assertEquals(0, cli.runFresh("pagetable", "dump", "--format", "arm64-4k", "--image", image.toString(), "--pt-base", "0x40000000",
            "--root", root), cli.err());
        assertTrue(cli.out().startsWith("fault va=0x5000 level=3 reason=ACCESS_FLAG"), cli.out());
    }

    @Test
    void shouldRefuseBadUnmapsAndBadDumpsNamingTheArgument() throws Exception {
        Path image = dir.resolve("bad.img");
        assertEquals(2, cli.runFresh("pagetable", "--format", "arm64-4k", "--map", "0:0:8K", "--unmap", "0x10000:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("'0x10000:4K'") && cli.err().contains("nothing is mapped"), cli.err());
        assertEquals(2, cli.runFresh("pagetable", "--format", "arm64-4k", "--unmap", "0:4K", "--map", "0:0:8K", "--out", image.toString()));
        assertTrue(cli.err().contains("nothing is mapped"), "requests apply in order: " + cli.err());
        assertEquals(2, cli.runFresh("pagetable", "--format", "arm64-4k", "--map", "0:0:8K", "--unmap", "0x800:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("multiples"), cli.err());
        assertEquals(2, cli.runFresh("pagetable", "--format", "arm64-4k", "--map", "0:0:8K", "--unmap", "0:4K", "--map", "0x1000:0:4K",
            "--out", image.toString()));
        assertTrue(cli.err().contains("overlaps"), "the second page is still mapped: " + cli.err());
        assertEquals(2, cli.runFresh("pagetable", "--format", "arm64-64k", "--va-bits", "41", "--map", "0:0:64K", "--out", image.toString()));
        assertTrue(cli.err().contains("va-bits=41"), cli.err());
        assertEquals(2, cli.runFresh("pagetable", "--format", "x86-64", "--va-bits", "39", "--map", "0:0:4K", "--out", image.toString()));
        assertTrue(cli.err().contains("va-bits=39") && cli.err().contains("fixed"), cli.err());
        assertEquals(2, cli.runFresh("pagetable", "--format", "arm64-s2-4k", "--map", "0:0:4K:rw-", "--out", image.toString()));
        assertTrue(cli.err().contains("arm64-s2-4k") && cli.err().contains("privileged-only"), cli.err());
        assertFalse(Files.exists(image), "no image written for refused input");

        assertEquals(0, cli.runFresh("pagetable", "--format", "arm64-4k", "--map", "0:0:4K", "--unmap", "0:4K", "--map", "0:0x1000:4K",
            "--out", image.toString()), "a map after an unmap of the same range: " + cli.err());
        String root = field(cli.out(), "root");
        Path empty = Files.createFile(dir.resolve("empty.img"));
        String[][] bad = {
            {"--format", "arm64-4k", "--image", dir.resolve("missing.img").toString(), "--pt-base", "0x40000000", "--root", root},
            {"--format", "arm64-4k", "--image", empty.toString(), "--pt-base", "0x40000000", "--root", root},
            {"--format", "arm64-4k", "--image", image.toString(), "--pt-base", "0x40000000", "--root", "0x80000000"},
            {"--format", "arm64-4k", "--image", image.toString(), "--pt-base", "0x40000123", "--root", root},
            {"--format", "arm64-4k", "--image", image.toString(), "--pt-base", "0x40000000", "--root", "0x40000008"},
            {"--format", "nope", "--image", image.toString(), "--pt-base", "0x40000000", "--root", root},
            {"--format", "arm64-4k", "--image", image.toString(), "--pt-base", "0x40000000"},
        };
        String[] names = {"--image", "--image", "--root", "--pt-base", "--root", "format=nope", "--root"};
        for (int i = 0; i < bad.length; i++) {
            String[] full = new String[bad[i].length + 2];
            full[0] = "pagetable";
            full[1] = "dump";
            System.arraycopy(bad[i], 0, full, 2, bad[i].length);
            assertEquals(2, cli.runFresh(full), String.join(" ", bad[i]) + " -> " + cli.err());
            assertTrue(cli.err().contains(names[i]) && cli.err().contains("usage:"), String.join(" ", bad[i]) + " -> " + cli.err());
        }
        assertEquals(0, cli.runFresh("pagetable", "dump", "--format", "arm64-4k", "--image", image.toString(), "--pt-base", "0x40000000",
            "--root", root), cli.err());
        assertEquals("va=0x0 pa=0x1000 size=4096 perms=rw-/WRITE_BACK leaves=4K@L3\n", cli.out());
    }
}
