package dev.vcmm.pagetable;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The registry of built-in formats, by the names the CLI spells.
 *
 * <p><b>Thread-safety:</b> immutable after class initialisation.
 */
public final class PageTableFormats {

    private static final Map<String, PageTableFormat> BY_NAME = new LinkedHashMap<>();

    static {
        for (PageTableFormat f : List.<PageTableFormat>of(Arm64Lpae4kFormat.INSTANCE, Armv7ShortFormat.INSTANCE,
            X86_64Format.INSTANCE, RiscvSv39Format.INSTANCE, RiscvSv48Format.INSTANCE)) {
            BY_NAME.put(f.name(), f);
        }
    }

    private PageTableFormats() {
    }

    /** @return every built-in format, in a stable order. */
    public static List<PageTableFormat> all() {
        return List.copyOf(BY_NAME.values());
    }

    /**
     * @return the format called {@code name}
     * @throws IllegalArgumentException listing the known names if there is none
     */
    public static PageTableFormat byName(String name) {
        PageTableFormat f = BY_NAME.get(name);
        if (f == null) {
            throw new IllegalArgumentException("format=" + name + " is unknown; known formats: " + String.join(", ", BY_NAME.keySet()));
        }
        return f;
    }
}
