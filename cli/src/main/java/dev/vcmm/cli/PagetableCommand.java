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

/**
 * {@code vcmm pagetable}: builds a page table of one hardware format for the given mappings and writes the
 * page-table memory as a raw little-endian image that an emulator or firmware can load at {@code --pt-base}.
 * Prints one JSON line: {@code {"format":..., "base":"0x...", "root":"0x...", "bytes":N}} (addresses as
 * hex strings, since 64-bit values do not survive every JSON reader as numbers).
 *
 * <p>Exit status: 0 when the image is written; 2 for bad usage, with the usage text: an unknown or incomplete
 * option, a bad number, an unknown format, a {@code --map-file} that cannot be read, a mapping that is malformed,
 * misaligned, overlaps another or does not fit the format's addresses, a bad {@code --pt-base}/{@code --pt-size};
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

    /** One {@code VA:PA:SIZE[:PERMS]} request and where it came from, for messages. */
    record Mapping(String source, String text, long va, long pa, long size, Attributes attributes) {
        String describe() {
            return "mapping " + source + " '" + text + "'";
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

    private static String usage() {
        return """
            usage: vcmm pagetable --format F --map VA:PA:SIZE[:PERMS] [--map ...] [--map-file FILE]
                                  [--pt-base PA] [--pt-size SIZE] --out FILE
              --format    one of: %s
              --map       a mapping; numbers in hex (0x...) or decimal, K/M/G suffixes allowed;
                          PERMS like rw-, r-x, rwx, with a trailing u for user access (default rw-)
              --map-file  one mapping per line in the same syntax; '#' starts a comment
              --pt-base   physical address of the page-table memory, the image's first byte (default 0x%x)
              --pt-size   size of the page-table memory tables are allocated from (default %s)
              --out       the image file to write (written whole, or not at all)
            exit status: 0 written; 1 the work failed (page-table memory too small, I/O); 2 bad usage
            """.formatted(String.join(", ", PageTableFormats.all().stream().map(PageTableFormat::name).toList()),
            DEFAULT_PT_BASE, "64M");
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) {
        String formatName = null;
        String outFile = null;
        long ptBase = DEFAULT_PT_BASE;
        long ptSize = DEFAULT_PT_SIZE;
        List<Mapping> mappings = new ArrayList<>();
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
            format = PageTableFormats.byName(formatName);
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
            for (Mapping m : mappings) {
                try {
                    table.map(m.va(), m.pa(), m.size(), m.attributes());
                } catch (IllegalArgumentException | AlreadyMappedException e) { // the mapping itself, not the run
                    return usageError(err, m.describe() + ": " + e.getMessage());
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
    private static int usageError(PrintStream err, String message) {
        err.println("vcmm pagetable: " + message);
        err.print(usage());
        return 2;
    }

    /** Checks every mapping against the format and against each other before anything is built. */
    static void checkMappings(PageTableFormat format, List<Mapping> mappings) {
        long minLeaf = format.leafSizes().getLast().size();
        for (int i = 0; i < mappings.size(); i++) {
            Mapping m = mappings.get(i);
            if (((m.va() | m.pa() | m.size()) & (minLeaf - 1)) != 0) {
                throw new IllegalArgumentException(m.describe() + ": VA, PA and SIZE must be multiples of "
                    + minLeaf + " bytes, the smallest " + format.name() + " page");
            }
            long last = m.va() + m.size() - 1;
            if (!format.isValidVa(m.va()) || !format.isValidVa(last) || Long.compareUnsigned(last, m.va()) < 0) {
                throw new IllegalArgumentException(m.describe() + ": the virtual range does not fit the "
                    + format.vaBits() + "-bit input addresses of " + format.name());
            }
            if (!fitsUnsigned(m.pa(), m.size(), format.paBits())) {
                throw new IllegalArgumentException(m.describe() + ": the physical range does not fit the "
                    + format.paBits() + "-bit output addresses of " + format.name());
            }
            for (int j = 0; j < i; j++) {
                Mapping o = mappings.get(j);
                long oLast = o.va() + o.size() - 1;
                if (Long.compareUnsigned(m.va(), oLast) <= 0 && Long.compareUnsigned(o.va(), last) <= 0) {
                    throw new IllegalArgumentException(m.describe() + " overlaps " + o.describe());
                }
            }
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

    private static void readMapFile(Path file, List<Mapping> mappings) {
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
            if (!text.isEmpty()) {
                mappings.add(parseMapping(file.getFileName() + ":" + (n + 1), text));
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
            Attributes attributes = parts.length == 4 ? Attributes.parse(parts[3]) : Attributes.RW;
            return new Mapping(source, text, va, pa, size, attributes);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("mapping " + source + " '" + text + "': " + e.getMessage(), e);
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
