package dev.vcmm.pagetable;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The registry of built-in formats, by the names the CLI spells.
 *
 * <p><b>Thread-safety:</b> immutable after class initialisation.
 */
public final class PageTableFormats {

    /** {@code arm64-16k}: 16 KiB granule, 48-bit TTBR0 inputs, 48-bit outputs. */
    public static final Arm64VmsaFormat ARM64_16K = Arm64VmsaFormat.stage1(16384, 48, 48, Arm64VmsaFormat.Range.TTBR0);
    /** {@code arm64-64k}: 64 KiB granule, 48-bit TTBR0 inputs, 48-bit outputs. */
    public static final Arm64VmsaFormat ARM64_64K = Arm64VmsaFormat.stage1(65536, 48, 48, Arm64VmsaFormat.Range.TTBR0);

    /** The spelling of a configured arm64 stage 1 format: granule, then optional input size, output size, range. */
    private static final Pattern ARM64 = Pattern.compile("arm64-(4|16|64)k(?:-va(\\d{1,2}))?(?:-pa(\\d{1,2}))?(-ttbr1)?");

    /** The spelling of an arm64 stage 2 format with an IPA size other than the default 40 bits. */
    private static final Pattern ARM64_S2 = Pattern.compile("arm64-s2-4k-ipa(\\d{1,2})");

    private static final Map<String, PageTableFormat> BY_NAME = new LinkedHashMap<>();
    private static final List<PageTableFormat> FOUR_K_PRIVILEGED;

    static {
        // the first five in the order they always had (messages list the known names in this order)
        for (PageTableFormat f : List.<PageTableFormat>of(Arm64Lpae4kFormat.INSTANCE, Armv7ShortFormat.INSTANCE,
            X86_64Format.INSTANCE, RiscvSv39Format.INSTANCE, RiscvSv48Format.INSTANCE, X86_64FiveLevelFormat.INSTANCE,
            RiscvSv57Format.INSTANCE)) {
            BY_NAME.put(f.name(), f);
        }
        FOUR_K_PRIVILEGED = List.copyOf(BY_NAME.values());
        for (PageTableFormat f : List.<PageTableFormat>of(ARM64_16K, ARM64_64K, Arm64Stage2Format.INSTANCE)) {
            BY_NAME.put(f.name(), f);
        }
    }

    private PageTableFormats() {
    }

    /**
     * {@return the built-in formats whose smallest page is 4 KiB and that express privileged read-write
     * mappings, in a stable order: what callers written before the 16K/64K granules and stage 2 assume of
     * "every format" (they map 4 KiB {@link Attributes#RW} pages in each). {@link #everyFormat()} adds the rest}
     */
    public static List<PageTableFormat> all() {
        return FOUR_K_PRIVILEGED;
    }

    /**
     * {@return every built-in format by its registered name, in a stable order: {@link #all()}, then
     * {@code arm64-16k}, {@code arm64-64k} (smallest pages of 16 and 64 KiB) and {@code arm64-s2-4k} (stage 2:
     * no privileged-only mappings). Sized variants ({@code arm64-64k-va42}, ...) are reached by {@link #byName}}
     */
    public static List<PageTableFormat> everyFormat() {
        return List.copyOf(BY_NAME.values());
    }

    /**
     * {@return the format called {@code name}}
     *
     * @param name a name of {@link #all()}, or an arm64 spelling with its options
     * @throws IllegalArgumentException listing the known names if there is none
     */
    public static PageTableFormat byName(String name) {
        PageTableFormat f = BY_NAME.get(name);
        if (f != null) {
            return f;
        }
        Matcher m = name == null ? null : ARM64.matcher(name);
        if (m != null && m.matches()) {
            int granule = Integer.parseInt(m.group(1)) << 10;
            int vaBits = m.group(2) == null ? 48 : Integer.parseInt(m.group(2));
            int paBits = m.group(3) == null ? 48 : Integer.parseInt(m.group(3));
            Arm64VmsaFormat.Range range = m.group(4) == null ? Arm64VmsaFormat.Range.TTBR0 : Arm64VmsaFormat.Range.TTBR1;
            if (granule == 4096 && vaBits == 48 && paBits == 48 && range == Arm64VmsaFormat.Range.TTBR0) {
                return Arm64Lpae4kFormat.INSTANCE;
            }
            try {
                return Arm64VmsaFormat.stage1(granule, vaBits, paBits, range);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("format=" + name + ": " + e.getMessage(), e);
            }
        }
        Matcher s2 = name == null ? null : ARM64_S2.matcher(name);
        if (s2 != null && s2.matches()) {
            try {
                return Arm64Stage2Format.withIpaBits(Integer.parseInt(s2.group(1)));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("format=" + name + ": " + e.getMessage(), e);
            }
        }
        throw new IllegalArgumentException("format=" + name + " is unknown; known formats: " + String.join(", ", BY_NAME.keySet())
            + " (arm64 formats also as arm64-{4,16,64}k[-vaN][-paN][-ttbr1] and arm64-s2-4k-ipaN)");
    }

    /**
     * {@return the format called {@code name} with {@code vaBits}-bit inputs: {@code name} itself for 48 bits or
     * a format without a choice of input size}
     *
     * @param name   a format name, as {@link #byName(String)} takes it
     * @param vaBits the input size wanted
     * @throws IllegalArgumentException naming the argument if the format has no such input size
     */
    public static PageTableFormat byName(String name, int vaBits) {
        PageTableFormat f = byName(name);
        if (f.vaBits() == vaBits) {
            return f;
        }
        if (f instanceof Arm64Stage2Format && name.equals(Arm64Stage2Format.INSTANCE.name())) {
            try {
                return Arm64Stage2Format.withIpaBits(vaBits);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("va-bits=" + vaBits + ": " + e.getMessage(), e);
            }
        }
        if (!(f instanceof Arm64Lpae4kFormat) && !(f instanceof Arm64VmsaFormat)) {
            throw new IllegalArgumentException("va-bits=" + vaBits + ": format " + name + " has a fixed " + f.vaBits()
                + "-bit input size");
        }
        if (f instanceof Arm64VmsaFormat a && !name.equals("arm64-" + (a.granule() >> 10) + "k")) {
            throw new IllegalArgumentException("va-bits=" + vaBits + " given with format " + name + ", which names its size");
        }
        int granule = f instanceof Arm64VmsaFormat a ? (int) a.granule() : 4096;
        try {
            return Arm64VmsaFormat.stage1(granule, vaBits, 48, Arm64VmsaFormat.Range.TTBR0);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("va-bits=" + vaBits + ": " + e.getMessage(), e);
        }
    }
}
