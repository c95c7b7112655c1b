package dev.vcmm.ffm;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The lines of {@code /proc/self/maps} that overlap a range: what the kernel says is mapped there. */
final class ProcMaps {

    /** One line: {@code [start, end)}, permissions such as {@code rw-s}, and the path (e.g. {@code /memfd:vcmm-ddr (deleted)}). */
    record Area(long start, long end, String perms, String path) {
    }

    private ProcMaps() {
    }

    /** @return the areas overlapping {@code [address, address + length)}, in address order */
    static List<Area> overlapping(long address, long length) {
        List<Area> out = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/maps"))) {
                String[] f = line.trim().split("\\s+", 6);
                String[] range = f[0].split("-");
                long start = Long.parseUnsignedLong(range[0], 16);
                long end = Long.parseUnsignedLong(range[1], 16);
                if (start < address + length && address < end) {
                    out.add(new Area(start, end, f[1], f.length > 5 ? f[5] : ""));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }
}
