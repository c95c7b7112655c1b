package dev.vcmm.cli;

import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;
import dev.vcmm.pagetable.Walker;
import dev.vcmm.heap.HeapPhysicalMemory;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.TreeSet;

/**
 * {@code vcmm pagetable dump}: reads a raw page-table image (as {@code vcmm pagetable} writes it, or as firmware
 * or another tool built it) and prints the mappings it holds, as a hardware walker finds them: contiguous
 * leaves with contiguous output addresses and equal permissions coalesced into one range, with the leaf sizes
 * that make it up; hierarchical limits applied; non-zero entries that would fault listed with the fault.
 *
 * <p>Text: one line per range, {@code va=0x... pa=0x... size=N perms=rw-/WRITE_BACK leaves=2M@L2,4K@L3}, then
 * {@code fault va=0x... level=N reason=... detail}. With {@code --json}: one line, {@code {"format":...,
 * "root":"0x...","mappings":[{"va":"0x...","pa":"0x...","size":N,"perms":"rw-","cache":"WRITE_BACK",
 * "leaves":["2M@L2"]}],"faults":[{"va":"0x...","level":N,"reason":"ACCESS_FLAG","detail":"..."}]}}.
 *
 * <p>Exit status: 0 printed; 2 bad usage (unknown option or format, a bad number, an unreadable or empty image,
 * a {@code --pt-base} not a multiple of 4096, a {@code --root} whose table is not wholly inside the image). The
 * walk reads only the image: a table address outside it is reported as a fault, never read.
 *
 * <p><b>Thread-safety:</b> stateless; {@link #run} uses only local state.
 */
final class PagetableDump {

    private PagetableDump() {
    }

    /** One coalesced range. */
    private static final class Range {
        final long va;
        final long pa;
        long size;
        final Attributes attributes;
        final TreeSet<String> leaves = new TreeSet<>();

        Range(long va, long pa, long size, Attributes attributes) {
            this.va = va;
            this.pa = pa;
            this.size = size;
            this.attributes = attributes;
        }
    }

    private record Fault(long va, int level, FaultReason reason, String detail) {
    }

    static int run(List<String> args, PrintStream out, PrintStream err) {
        String formatName = null;
        Integer vaBits = null;
        String image = null;
        Long ptBase = null;
        Long root = null;
        boolean json = false;
        PageTableFormat format;
        byte[] bytes;
        try {
            for (int i = 0; i < args.size(); i++) {
                String opt = args.get(i);
                if (opt.equals("-h") || opt.equals("--help")) {
                    out.print(PagetableCommand.usage());
                    return 0;
                }
                if (opt.equals("--json")) {
                    json = true;
                    continue;
                }
                if (i + 1 >= args.size()) {
                    throw new IllegalArgumentException(opt + " needs a value");
                }
                String value = args.get(++i);
                switch (opt) {
                    case "--format" -> formatName = value;
                    case "--va-bits" -> vaBits = PagetableCommand.parseVaBits(value);
                    case "--image" -> image = value;
                    case "--pt-base" -> ptBase = PagetableCommand.parseNumber(value, "--pt-base");
                    case "--root" -> root = PagetableCommand.parseNumber(value, "--root");
                    default -> throw new IllegalArgumentException("unknown option for dump: " + opt);
                }
            }
            for (Object[] required : new Object[][] {{formatName, "--format"}, {image, "--image"}, {ptBase, "--pt-base"}, {root, "--root"}}) {
                if (required[0] == null) {
                    throw new IllegalArgumentException("dump: " + required[1] + " is required");
                }
            }
            format = vaBits == null ? PageTableFormats.byName(formatName) : PageTableFormats.byName(formatName, vaBits);
            try {
                bytes = Files.readAllBytes(Path.of(image));
            } catch (IOException e) {
                throw new IllegalArgumentException("--image " + image + ": cannot read it (" + e + ")");
            }
            if (bytes.length == 0) {
                throw new IllegalArgumentException("--image " + image + " is empty");
            }
            if (ptBase < 0 || (ptBase & 4095) != 0) {
                throw new IllegalArgumentException(String.format("--pt-base=0x%x must be a non-negative multiple of 4096", ptBase));
            }
            long rootBytes = (long) format.entryBytes() << format.levelBits(0);
            if (Long.compareUnsigned(root, ptBase) < 0 || Long.compareUnsigned(root - ptBase, bytes.length) >= 0
                || Long.compareUnsigned(rootBytes, bytes.length - (root - ptBase)) > 0) {
                throw new IllegalArgumentException(String.format("--root=0x%x: the %d-byte root table of %s is not inside the"
                    + " image [0x%x, 0x%x) (%d bytes at --pt-base)", root, rootBytes, format.name(), ptBase,
                    ptBase + bytes.length, bytes.length));
            }
            if ((root & (rootBytes - 1)) != 0) {
                throw new IllegalArgumentException(String.format("--root=0x%x is not aligned to its %d-byte table", root, rootBytes));
            }
        } catch (IllegalArgumentException e) {
            return PagetableCommand.usageError(err, e.getMessage());
        }
        List<Range> ranges = new ArrayList<>();
        List<Fault> faults = new ArrayList<>();
        try (HeapPhysicalMemory memory = HeapPhysicalMemory.create(ptBase, (bytes.length + 4095L) & -4096L)) {
            memory.copyIn(bytes, 0, ptBase, bytes.length);
            Walker.forEachLeaf(format, memory, root, new Walker.LeafVisitor() {
                @Override
                public void leaf(long va, long pa, long span, LeafSize leaf, Attributes attributes) {
                    Range last = ranges.isEmpty() ? null : ranges.getLast();
                    if (last != null && last.va + last.size == va && last.pa + last.size == pa && last.attributes.equals(attributes)) {
                        last.size += span;
                    } else {
                        last = new Range(va, pa, span, attributes);
                        ranges.add(last);
                    }
                    last.leaves.add(leaf.toString());
                }

                @Override
                public void fault(long va, long span, int level, FaultReason reason, String detail) {
                    faults.add(new Fault(va, level, reason, detail));
                }
            });
        }
        if (json) {
            StringBuilder b = new StringBuilder();
            b.append(String.format(Locale.ROOT, "{\"format\":\"%s\",\"root\":\"0x%x\",\"mappings\":[", format.name(), root));
            for (int i = 0; i < ranges.size(); i++) {
                Range r = ranges.get(i);
                String perms = r.attributes.toString();
                b.append(i == 0 ? "" : ",").append(String.format(Locale.ROOT,
                    "{\"va\":\"0x%x\",\"pa\":\"0x%x\",\"size\":%d,\"perms\":\"%s\",\"cache\":\"%s\",\"leaves\":[%s]}",
                    r.va, r.pa, r.size, perms.substring(0, perms.indexOf('/')), r.attributes.cache(),
                    String.join(",", r.leaves.stream().map(l -> "\"" + l + "\"").toList())));
            }
            b.append("],\"faults\":[");
            for (int i = 0; i < faults.size(); i++) {
                Fault f = faults.get(i);
                b.append(i == 0 ? "" : ",").append(String.format(Locale.ROOT, "{\"va\":\"0x%x\",\"level\":%d,\"reason\":\"%s\",\"detail\":\"%s\"}",
                    f.va(), f.level(), f.reason(), f.detail().replace("\\", "\\\\").replace("\"", "\\\"")));
            }
            out.println(b.append("]}"));
        } else {
            for (Range r : ranges) {
                out.printf(Locale.ROOT, "va=0x%x pa=0x%x size=%d perms=%s leaves=%s%n", r.va, r.pa, r.size, r.attributes,
                    String.join(",", r.leaves));
            }
            for (Fault f : faults) {
                out.printf(Locale.ROOT, "fault va=0x%x level=%d reason=%s %s%n", f.va(), f.level(), f.reason(), f.detail());
            }
        }
        return 0;
    }
}
