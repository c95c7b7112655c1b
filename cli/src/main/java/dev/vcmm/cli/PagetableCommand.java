package dev.vcmm.cli;

import dev.vcmm.MemoryType;
import dev.vcmm.pagetable.AlreadyMappedException;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.pagetable.PageTableMemoryException;
import dev.vcmm.spi.PhysicalMemory;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * {@code vcmm pagetable}: builds a page table of one hardware format for the given mappings and writes the
 * page-table memory as a raw little-endian image that an emulator or firmware can load at {@code --pt-base}.
 * Prints one JSON line: {@code {"format":..., "base":"0x...", "root":"0x...", "bytes":N}} (addresses as
 * hex strings, since 64-bit values do not survive every JSON reader as numbers). Maps and unmaps ({@code --map},
 * {@code --unmap}, and {@code map}/{@code unmap} lines of {@code --map-file}) apply in the order given, so a table
 * shaped by partial unmaps (split blocks and runs) can be exported; {@code vcmm pagetable dump} ({@link
 * PagetableDump}) reads such an image back.
 *
 * <p>Exit status: 0 when the image is written; 2 for bad usage, with the usage text: an unknown or incomplete
 * option, a bad number, an unknown format or {@code --va-bits}, a {@code --map-file} that cannot be read, a mapping
 * that is malformed, misaligned, overlaps a live one or does not fit the format's addresses or permissions, an
 * unmap of nothing, a bad {@code --pt-base}/{@code --pt-size};
 * 1 when the work fails: the page-table memory runs out, or the image cannot be written. The image is written to
 * a temporary file beside {@code --out} and renamed over it, so {@code --out} is never left half-written.
 *
 * <p><b>Thread-safety:</b> stateless; {@link #run} uses only local state.
 */
final class PagetableCommand implements Command {

    /** Where the page-table memory sits when {@code --pt-base} is not given. */
    static final long DEFAULT_PT_BASE = 0x4000_0000L;
    /** How much page-table memory there is to allocate tables from when {@code --pt-size} is not given. */
    static final long DEFAULT_PT_SIZE = 64L << 20;

    /** Names temporary files; a collision only costs another try. */
    private static final SecureRandom RANDOM = new SecureRandom();

    /** One request of the table's history, applied in order: a map or an unmap, and where it came from. */
    sealed interface Step permits Mapping, Unmap {
        /** @return the request as messages name it */
        String describe();

        long va();

        long size();
    }

    /**
     * One {@code VA:PA:SIZE[:PERMS]} request and where it came from, for messages.
     *
     * @param attributes the permissions given, or null for the format's default (see {@link #defaultAttributes})
     */
    record Mapping(String source, String text, long va, long pa, long size, Attributes attributes) implements Step {
        @Override
        public String describe() {
            return "mapping " + source + " '" + text + "'";
        }
    }

    /** One {@code VA:SIZE} unmap request and where it came from, for messages. */
    record Unmap(String source, String text, long va, long size) implements Step {
        @Override
        public String describe() {
            return "unmap " + source + " '" + text + "'";
        }
    }

    @Override
    public String name() {
        return "pagetable";
    }

    @Override
    public String synopsis() {
        return "--format F --map VA:PA:SIZE[:PERMS] ... --out FILE";
    }

    @Override
    public String summary() {
        return "build a page table in a hardware format and write its memory as a raw image";
    }

    static String usage() {
        return """
            usage: vcmm pagetable --format F [--va-bits N] --map VA:PA:SIZE[:PERMS] [--map ...] [--unmap VA:SIZE ...]
                                  [--map-file FILE] [--pt-base PA] [--pt-size SIZE] --out FILE
                   vcmm pagetable dump --format F [--va-bits N] --image FILE --pt-base PA --root PA [--json]
              --format    one of: %s;
                          also arm64-{4,16,64}k[-vaN][-paN][-ttbr1] and arm64-s2-4k-ipaN
              --va-bits   input-address bits of an arm64 format (4k 39-48, 16k 36-48, 64k 42-48; s2: 32-48)
              --map       a mapping; numbers in hex (0x...) or decimal, K/M/G suffixes allowed;
                          PERMS like rw-, r-x, rwx, with a trailing u for user access
                          (default rw-; rw-u for arm64-s2-4k, whose mappings apply at every exception level)
              --unmap     unmap a range (it may split blocks and runs); maps and unmaps apply in the order given
              --map-file  one request per line: [map] VA:PA:SIZE[:PERMS] or unmap VA:SIZE; '#' starts a comment
              --pt-base   physical address of the page-table memory, the image's first byte (default 0x%x)
              --pt-size   size of the page-table memory tables are allocated from (default %s)
              --out       the image file to write (written whole, or not at all)
            exit status: 0 written; 1 the work failed (page-table memory too small, I/O); 2 bad usage
            """.formatted(String.join(", ", PageTableFormats.everyFormat().stream().map(PageTableFormat::name).toList()),
            DEFAULT_PT_BASE, "64M");
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) {
        if (!args.isEmpty() && args.getFirst().equals("dump")) {
            return PagetableDump.run(args.subList(1, args.size()), out, err);
        }
        String formatName = null;
        Integer vaBits = null;
        String outFile = null;
        long ptBase = DEFAULT_PT_BASE;
        long ptSize = DEFAULT_PT_SIZE;
        List<Step> mappings = new ArrayList<>();
        PageTableFormat format;
        try {
            for (int i = 0; i < args.size(); i++) {
                String opt = args.get(i);
                if (opt.equals("-h") || opt.equals("--help")) {
                    out.print(usage());
                    return 0;
                }
                if (i + 1 >= args.size()) {
                    throw new UsageException(opt + " needs a value");
                }
                String value = args.get(++i);
                switch (opt) {
                    case "--format" -> formatName = value;
                    case "--out" -> outFile = value;
                    case "--pt-base" -> ptBase = parseNumber(value, "--pt-base");
                    case "--pt-size" -> ptSize = parseNumber(value, "--pt-size");
                    case "--map" -> mappings.add(parseMapping("#" + (mappings.size() + 1) + " (--map)", value));
                    case "--unmap" -> mappings.add(parseUnmap("#" + (mappings.size() + 1) + " (--unmap)", value));
                    case "--va-bits" -> vaBits = parseVaBits(value);
                    case "--map-file" -> readMapFile(Path.of(value), mappings);
                    default -> throw new UsageException("unknown option " + opt);
                }
            }
            if (formatName == null) {
                throw new UsageException("--format is required");
            }
            if (outFile == null) {
                throw new UsageException("--out is required");
            }
            if (mappings.isEmpty()) {
                throw new UsageException("give at least one --map or --map-file");
            }
            format = vaBits == null ? PageTableFormats.byName(formatName) : PageTableFormats.byName(formatName, vaBits);
            checkMappings(format, mappings);
        } catch (IllegalArgumentException e) { // UsageException is one
            return usageError(err, e.getMessage());
        }
        MemoryType ptMemory;
        try {
            ptMemory = MemoryType.builder("pagetable").base(ptBase).size(ptSize).build();
        } catch (IllegalArgumentException e) {
            return usageError(err, "--pt-base=0x" + Long.toHexString(ptBase) + " --pt-size=" + ptSize + ": " + e.getMessage());
        }
        try (ptMemory; PageTable table = PageTable.create(format, ptMemory.memory(), ptMemory.allocator())) {
            for (Step step : mappings) {
                try {
                    switch (step) {
                        case Mapping m -> table.map(m.va(), m.pa(), m.size(), attributesOf(format, m));
                        case Unmap u -> table.unmap(u.va(), u.size());
                    }
                } catch (IllegalArgumentException | AlreadyMappedException e) { // the request itself, not the run
                    return usageError(err, step.describe() + ": " + e.getMessage());
                }
            }
            long[] end = {ptBase};
            table.forEachTable((level, pa, bytes) -> end[0] = Math.max(end[0], pa + bytes));
            long bytes = end[0] - ptBase;
            writeImage(ptMemory.memory(), ptBase, bytes, Path.of(outFile));
            out.printf(Locale.ROOT, "{\"format\":\"%s\",\"base\":\"0x%x\",\"root\":\"0x%x\",\"bytes\":%d}%n",
                format.name(), ptBase, table.root(), bytes);
            return 0;
        } catch (PageTableMemoryException e) {
            err.println("vcmm pagetable: " + e.getMessage() + " (--pt-size=" + ptSize + " is too small for these mappings;"
                + " give more)");
            return 1;
        } catch (UncheckedIOException e) {
            err.println("vcmm pagetable: " + e.getMessage());
            return 1;
        }
    }

    /** Prints {@code message} and the usage text. @return 2, the exit code of bad usage */
    static int usageError(PrintStream err, String message) {
        err.println("vcmm pagetable: " + message);
        err.print(usage());
        return 2;
    }

    /**
     * Checks every request against the format, and replays them in order on a model of the live ranges before
     * anything is built: a map must not overlap what is live at that point; an unmap must be aligned, fit the
     * format and unmap something (an unmap of nothing is refused as a likely typo).
     */
    static void checkMappings(PageTableFormat format, List<? extends Step> steps) {
        long minLeaf = format.leafSizes().getLast().size();
        TreeMap<Long, Live> live = new TreeMap<>(Long::compareUnsigned); // disjoint live ranges by start
        for (Step step : steps) {
            long pa = step instanceof Mapping m ? m.pa() : 0;
            if (((step.va() | pa | step.size()) & (minLeaf - 1)) != 0) {
                throw new IllegalArgumentException(step.describe() + ": VA" + (step instanceof Mapping ? ", PA" : "")
                    + " and SIZE must be multiples of " + minLeaf + " bytes, the smallest " + format.name() + " page");
            }
            long last = step.va() + step.size() - 1;
            if (!format.isValidVa(step.va()) || !format.isValidVa(last) || Long.compareUnsigned(last, step.va()) < 0) {
                throw new IllegalArgumentException(step.describe() + ": the virtual range does not fit the "
                    + format.vaBits() + "-bit input addresses of " + format.name());
            }
            switch (step) {
                case Mapping m -> {
                    if (!fitsUnsigned(m.pa(), m.size(), format.paBits())) {
                        throw new IllegalArgumentException(m.describe() + ": the physical range does not fit the "
                            + format.paBits() + "-bit output addresses of " + format.name());
                    }
                    format.checkAttributes(attributesOf(format, m)); // names the format and what it cannot express
                    Map.Entry<Long, Live> before = live.floorEntry(last);
                    if (before != null && Long.compareUnsigned(before.getValue().last(), m.va()) >= 0) {
                        throw new IllegalArgumentException(m.describe() + " overlaps " + before.getValue().owner().describe());
                    }
                    live.put(m.va(), new Live(last, m));
                }
                case Unmap u -> {
                    boolean any = false;
                    for (Map.Entry<Long, Live> e = live.floorEntry(last);
                         e != null && Long.compareUnsigned(e.getValue().last(), u.va()) >= 0; e = live.floorEntry(last)) {
                        any = true;
                        live.remove(e.getKey());
                        Live l = e.getValue();
                        if (Long.compareUnsigned(last, l.last()) < 0) {
                            live.put(last + 1, new Live(l.last(), l.owner())); // the part after the hole stays
                        }
                        if (Long.compareUnsigned(e.getKey(), u.va()) < 0) {
                            live.put(e.getKey(), new Live(u.va() - 1, l.owner())); // and the part before it
                            break;
                        }
                    }
                    if (!any) {
                        throw new IllegalArgumentException(u.describe() + ": nothing is mapped there (requests apply in"
                            + " order; an unmap of nothing is refused as a likely mistake)");
                    }
                }
            }
        }
    }

    /** A live range of the model {@link #checkMappings} replays: its last byte and the map that made it. */
    private record Live(long last, Mapping owner) {
    }

    /** @return the permissions of {@code m}: as given, or the format's default */
    static Attributes attributesOf(PageTableFormat format, Mapping m) {
        return m.attributes() != null ? m.attributes() : defaultAttributes(format);
    }

    /**
     * @return {@code rw-} (privileged read-write, write-back), or {@code rw-u} where the format has no privileged-only
     * mappings (Arm stage 2: its permissions apply at every exception level)
     */
    static Attributes defaultAttributes(PageTableFormat format) {
        try {
            format.checkAttributes(Attributes.RW);
            return Attributes.RW;
        } catch (IllegalArgumentException e) {
            return Attributes.RW.withUser(true);
        }
    }

    /**
     * @return whether {@code [start, start + size)}, read as unsigned 64-bit numbers with {@code size > 0}, lies in
     *         {@code [0, 2^bits)}; no sum is formed, so nothing wraps however close to 2^64 the range is
     */
    static boolean fitsUnsigned(long start, long size, int bits) {
        long max = bits >= 64 ? -1L : (1L << bits) - 1; // the largest address, unsigned
        return Long.compareUnsigned(start, max) <= 0 && Long.compareUnsigned(size - 1, max - start) <= 0;
    }

    /**
     * Writes {@code bytes} of {@code memory} from {@code base} to {@code file}, all or nothing: into a new temporary
     * file beside it (same directory, so same file system), forced to disk, then renamed over {@code file} with
     * {@link StandardCopyOption#ATOMIC_MOVE}. A reader sees the old file or the whole new one; on any failure the
     * temporary file is deleted and {@code file} is as it was.
     *
     * @throws UncheckedIOException if writing or renaming fails (the message names the file)
     */
    static void writeImage(PhysicalMemory memory, long base, long bytes, Path file) {
        Path target = file.toAbsolutePath();
        Path temp = null;
        try {
            temp = createTempBeside(target);
            try (FileChannel channel = FileChannel.open(temp, StandardOpenOption.WRITE)) {
                byte[] buffer = new byte[64 << 10];
                for (long off = 0; off < bytes; off += buffer.length) {
                    int n = (int) Math.min(buffer.length, bytes - off);
                    memory.copyOut(base + off, buffer, 0, n);
                    ByteBuffer b = ByteBuffer.wrap(buffer, 0, n);
                    while (b.hasRemaining()) {
                        channel.write(b);
                    }
                }
                channel.force(true);
            }
            Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE); // rename(2): replaces a file at target
            temp = null;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the image to " + file + ": " + e, e);
        } finally {
            if (temp != null) {
                try {
                    Files.deleteIfExists(temp);
                } catch (IOException e) {
                    // best effort: the failure being reported matters more; the name says what the file is
                }
            }
        }
    }

    /** Creates {@code .NAME.RANDOM.tmp} next to {@code target}, with the permissions a new file gets by default. */
    private static Path createTempBeside(Path target) throws IOException {
        Path dir = target.getParent();
        for (int attempt = 0; ; attempt++) {
            Path temp = dir.resolve("." + target.getFileName() + "." + Long.toUnsignedString(RANDOM.nextLong(), 36) + ".tmp");
            try {
                Files.newByteChannel(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE).close();
                return temp;
            } catch (FileAlreadyExistsException e) {
                if (attempt >= 10) {
                    throw e;
                }
            }
        }
    }

    private static void readMapFile(Path file, List<Step> mappings) {
        List<String> lines;
        try {
            lines = Files.readAllLines(file);
        } catch (IOException e) {
            throw new IllegalArgumentException("--map-file " + file + ": cannot read it (" + e + ")");
        }
        for (int n = 0; n < lines.size(); n++) {
            String line = lines.get(n);
            int hash = line.indexOf('#');
            String text = (hash >= 0 ? line.substring(0, hash) : line).strip();
            String source = file.getFileName() + ":" + (n + 1);
            if (text.startsWith("unmap ") || text.startsWith("unmap\t")) {
                mappings.add(parseUnmap(source, text.substring(6).strip()));
            } else if (text.startsWith("map ") || text.startsWith("map\t")) {
                mappings.add(parseMapping(source, text.substring(4).strip()));
            } else if (!text.isEmpty()) {
                mappings.add(parseMapping(source, text));
            }
        }
    }

    /** Parses {@code VA:PA:SIZE[:PERMS]}. */
    static Mapping parseMapping(String source, String text) {
        String[] parts = text.split(":", -1);
        if (parts.length < 3 || parts.length > 4) {
            throw new IllegalArgumentException("mapping " + source + " '" + text + "': expected VA:PA:SIZE[:PERMS]");
        }
        try {
            long va = parseNumber(parts[0], "VA");
            long pa = parseNumber(parts[1], "PA");
            long size = parseNumber(parts[2], "SIZE");
            if (size <= 0) {
                throw new IllegalArgumentException("SIZE must be positive");
            }
            Attributes attributes = parts.length == 4 ? Attributes.parse(parts[3]) : null; // null: the format's default
            return new Mapping(source, text, va, pa, size, attributes);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("mapping " + source + " '" + text + "': " + e.getMessage(), e);
        }
    }

    /** Parses {@code VA:SIZE}. */
    static Unmap parseUnmap(String source, String text) {
        String[] parts = text.split(":", -1);
        if (parts.length != 2) {
            throw new IllegalArgumentException("unmap " + source + " '" + text + "': expected VA:SIZE");
        }
        try {
            long va = parseNumber(parts[0], "VA");
            long size = parseNumber(parts[1], "SIZE");
            if (size <= 0) {
                throw new IllegalArgumentException("SIZE must be positive");
            }
            return new Unmap(source, text, va, size);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unmap " + source + " '" + text + "': " + e.getMessage(), e);
        }
    }

    /** Parses {@code --va-bits}: a decimal number of input-address bits. */
    static int parseVaBits(String text) {
        try {
            int bits = Integer.parseInt(text.strip());
            if (bits < 1 || bits > 64) {
                throw new NumberFormatException();
            }
            return bits;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--va-bits=" + text + " is not a number of bits (e.g. 39, 42, 48)");
        }
    }

    /** Parses {@code 0x...} or decimal, with an optional K, M or G suffix (binary multiples). */
    static long parseNumber(String text, String what) {
        String t = text.strip().replace("_", "");
        long multiplier = 1;
        if (!t.isEmpty()) {
            char last = Character.toUpperCase(t.charAt(t.length() - 1));
            int shift = switch (last) {
                case 'K' -> 10;
                case 'M' -> 20;
                case 'G' -> 30;
                default -> 0;
            };
            if (shift != 0) { // K, M and G are not hex digits: a suffix is never ambiguous
                multiplier = 1L << shift;
                t = t.substring(0, t.length() - 1);
            }
        }
        try {
            long v = t.startsWith("0x") || t.startsWith("0X") ? Long.parseUnsignedLong(t.substring(2), 16) : Long.parseLong(t);
            return Math.multiplyExact(v, multiplier);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException(what + "=" + text + " is not a number (hex 0x..., or decimal with K/M/G)");
        }
    }

    /** Bad command-line usage: exit code 2 with the usage text. */
    private static final class UsageException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }
}
