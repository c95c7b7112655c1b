package dev.vcmm.cli;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.DeviceKind;
import dev.vcmm.DeviceOptions;
import dev.vcmm.Vcm;
import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * Reads a scenario from JSON and validates it, naming the offending field in every error, e.g.
 * {@code devices[2].format: unknown format "arm65"; known: arm64-4k, armv7-short, ...}.
 *
 * <p>The schema (sizes and addresses are numbers or strings: {@code "0x8000_0000"}, {@code "2G"}, {@code "64K"};
 * {@code //} and {@code /* *}{@code /} comments are allowed):
 * <pre>
 * { "name": "camera-to-display",  "description": "...",  "frames": 4,  "seed": 1,
 *   "policies": ["4K", "64K+4K", "1M+64K+4K", "16M+1M+64K+4K"],          // default: these four
 *   "memoryTypes": [ {"name": "ddr", "base": "0x80000000", "size": "2G", "fragment": "512M", "secure": false} ],
 *   "pageTableMemory": "pt",                                             // default: the first memory type
 *   "devices": [ {"name": "camera", "kind": "iommu" | "cpu" | "one-to-one", "format": "armv7-short",
 *                 "iotlb": {"entries": 32, "ways": 32}, "secure": false} ],
 *   "vcms": [ {"name": "media", "kind": "virtual" | "cpu" | "one-to-one", "start": "0x10000000", "size": "1G",
 *              "memoryType": "ddr" (one-to-one, instead of start and size), "devices": ["camera", "isp"]} ],
 *   "buffers": [ {"name": "raw", "count": 2, "width": 3840, "height": 2160, "bytesPerPixel": 4 | "size": "4M",
 *                 "memoryType": "ddr", "contiguous": false, "chunkPolicy": "4K" (default: the policy under test),
 *                 "vcms": ["media"]} ],
 *   "workload": [ {"device": "camera", "access": "write" | "read", "buffer": "raw",
 *                  "pattern": "streaming" | "strided" | "random", "burst": "4K",
 *                  "stride": "15360" (strided; default the buffer's row pitch), "accesses": 1000 (random)} ] }
 * </pre>
 *
 * <p><b>Thread-safety:</b> stateless.
 */
final class ScenarioParser {

    /** The policies compared when a scenario names none. */
    static final List<ChunkPolicy> DEFAULT_POLICIES = List.of(ChunkPolicy.parse("4K"), ChunkPolicy.parse("64K+4K"),
        ChunkPolicy.parse("1M+64K+4K"), ChunkPolicy.parse("16M+1M+64K+4K"));

    static final JsonMapper MAPPER = JsonMapper.builder()
        .enable(JsonReadFeature.ALLOW_JAVA_COMMENTS)
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
        .enable(com.fasterxml.jackson.core.StreamReadFeature.STRICT_DUPLICATE_DETECTION)
        .build();

    private ScenarioParser() {
    }

    /**
     * @param json   the scenario text
     * @param source where it came from, for messages (a file name)
     * @return the validated scenario
     * @throws ScenarioException naming the field and what is wrong with it
     */
    static Scenario parse(String json, String source) {
        JsonNode root;
        try {
            root = MAPPER.readTree(json);
        } catch (JacksonException e) {
            JsonLocation at = e.getLocation();
            String where = at == null ? "" : "line " + at.getLineNr() + ", column " + at.getColumnNr() + ": ";
            throw new ScenarioException(source + ": not valid JSON: " + where + e.getOriginalMessage());
        }
        if (root == null || root.isMissingNode()) {
            throw new ScenarioException(source + ": empty; expected a JSON object");
        }
        return new ScenarioParser.Reader().scenario(root);
    }

    /** A bad scenario: the message starts with the path of the bad field. */
    static final class ScenarioException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        ScenarioException(String message) {
            super(message);
        }
    }

    /** One pass over one document. */
    private static final class Reader {
        private final Map<String, Scenario.MemorySpec> memory = new HashMap<>();
        private final Map<String, Scenario.DeviceSpec> devices = new HashMap<>();
        private final Map<String, Scenario.VcmSpec> vcms = new HashMap<>();
        private final Map<String, Scenario.BufferSpec> buffers = new HashMap<>();
        /** device -> the VCM it is associated with. */
        private final Map<String, String> vcmOfDevice = new HashMap<>();

        Scenario scenario(JsonNode n) {
            object(n, "scenario");
            keys(n, "", "name", "description", "frames", "seed", "policies", "memoryTypes", "pageTableMemory", "devices",
                "vcms", "buffers", "workload");
            String name = string(n, "", "name", null);
            String description = string(n, "", "description", "");
            int frames = (int) integer(n, "", "frames", 4, 1, 1_000_000);
            long seed = integer(n, "", "seed", 1, Long.MIN_VALUE, Long.MAX_VALUE);
            List<ChunkPolicy> policies = DEFAULT_POLICIES;
            if (n.has("policies")) {
                policies = new ArrayList<>();
                Set<ChunkPolicy> seen = new HashSet<>();
                List<JsonNode> items = array(n, "", "policies");
                for (int i = 0; i < items.size(); i++) {
                    ChunkPolicy p = policy(items.get(i), "policies[" + i + "]");
                    if (!seen.add(p)) {
                        throw error("policies[" + i + "]", "policy " + p + " is listed twice");
                    }
                    policies.add(p);
                }
            }
            List<Scenario.MemorySpec> memoryTypes = list(n, "memoryTypes", this::memoryType);
            String pt = string(n, "", "pageTableMemory", memoryTypes.getFirst().name());
            if (!memory.containsKey(pt)) {
                throw error("pageTableMemory", "unknown memory type \"" + pt + "\"; known: " + String.join(", ", names(memoryTypes.stream().map(Scenario.MemorySpec::name).toList())));
            }
            if (memory.get(pt).secure()) {
                throw error("pageTableMemory", "memory type \"" + pt + "\" is secure; page tables need non-secure memory");
            }
            List<Scenario.DeviceSpec> devs = list(n, "devices", this::device);
            List<Scenario.VcmSpec> vs = list(n, "vcms", this::vcm);
            List<Scenario.BufferSpec> bs = list(n, "buffers", this::buffer);
            List<Scenario.StepSpec> steps = list(n, "workload", this::step);
            return new Scenario(name, description, frames, seed, List.copyOf(policies), memoryTypes, pt, devs, vs, bs, steps);
        }

        private Scenario.MemorySpec memoryType(JsonNode n, String path) {
            keys(n, path, "name", "base", "size", "secure", "fragment", "zeroOnHandoff");
            String name = unique(n, path, memory.keySet(), "memory type");
            long base = size(n, path, "base", null, 0);
            long size = size(n, path, "size", null, 1L << 20);
            if ((base & 0xFFF) != 0 || (size & 0xFFF) != 0) {
                throw error(path, String.format("base=0x%x and size=0x%x must be multiples of 4K", base, size));
            }
            for (Scenario.MemorySpec o : memory.values()) {
                if (base < o.base() + o.size() && o.base() < base + size) {
                    throw error(path + ".base", "memory type \"" + name + "\" overlaps memory type \"" + o.name() + "\"");
                }
            }
            long fragment = size(n, path, "fragment", 0L, 0);
            if (fragment > size / 2 || (fragment & 0x1FFF) != 0) {
                throw error(path + ".fragment", "fragment=" + fragment + " must be a multiple of 8K and at most half the size ("
                    + size / 2 + ")");
            }
            Scenario.MemorySpec m = new Scenario.MemorySpec(name, base, size, bool(n, path, "secure", false), fragment,
                bool(n, path, "zeroOnHandoff", true));
            memory.put(name, m);
            return m;
        }

        private Scenario.DeviceSpec device(JsonNode n, String path) {
            keys(n, path, "name", "kind", "format", "iotlb", "secure");
            String name = unique(n, path, devices.keySet(), "device");
            DeviceKind kind = choice(n, path, "kind", Map.of("iommu", DeviceKind.IOMMU, "cpu", DeviceKind.CPU,
                "one-to-one", DeviceKind.ONE_TO_ONE));
            PageTableFormat format = null;
            int entries = DeviceOptions.DEFAULT.iotlbEntries();
            int ways = DeviceOptions.DEFAULT.iotlbWays();
            if (kind == DeviceKind.ONE_TO_ONE) {
                for (String k : List.of("format", "iotlb")) {
                    if (n.has(k)) {
                        throw error(path + "." + k, "a one-to-one device translates nothing, so it has no " + k);
                    }
                }
            } else {
                String f = string(n, path, "format", null);
                try {
                    format = PageTableFormats.byName(f);
                } catch (IllegalArgumentException e) {
                    throw error(path + ".format", "unknown format \"" + f + "\"; known: "
                        + String.join(", ", PageTableFormats.all().stream().map(PageTableFormat::name).toList()));
                }
                if (n.has("iotlb")) {
                    JsonNode t = n.get("iotlb");
                    object(t, path + ".iotlb");
                    keys(t, path + ".iotlb", "entries", "ways");
                    entries = (int) integer(t, path + ".iotlb", "entries", entries, 1, 1 << 20);
                    ways = (int) integer(t, path + ".iotlb", "ways", Math.min(ways, entries), 1, 1 << 20);
                    try {
                        DeviceOptions.iotlb(entries, ways);
                    } catch (IllegalArgumentException e) {
                        throw error(path + ".iotlb", "entries=" + entries + " ways=" + ways
                            + ": entries must be a multiple of ways giving a power-of-two number of sets");
                    }
                }
            }
            Scenario.DeviceSpec d = new Scenario.DeviceSpec(name, kind, format, entries, ways, bool(n, path, "secure", false));
            devices.put(name, d);
            return d;
        }

        private Scenario.VcmSpec vcm(JsonNode n, String path) {
            keys(n, path, "name", "kind", "start", "size", "memoryType", "devices");
            String name = unique(n, path, vcms.keySet(), "VCM");
            String kind = string(n, path, "kind", null);
            if (!List.of("virtual", "cpu", "one-to-one").contains(kind)) {
                throw error(path + ".kind", "unknown kind \"" + kind + "\"; known: virtual, cpu, one-to-one");
            }
            long start;
            long size;
            if (kind.equals("one-to-one") && n.has("memoryType")) {
                if (n.has("start") || n.has("size")) {
                    throw error(path, "give either memoryType or start and size, not both");
                }
                Scenario.MemorySpec m = memoryRef(n.get("memoryType"), path + ".memoryType");
                start = m.base();
                size = m.size();
            } else {
                if (n.has("memoryType")) {
                    throw error(path + ".memoryType", "only a one-to-one VCM covers a memory type; give start and size");
                }
                start = size(n, path, "start", null, 0);
                size = size(n, path, "size", null, 4096);
                if (((start | size) & 0xFFF) != 0) {
                    throw error(path, String.format("start=0x%x and size=0x%x must be multiples of 4K", start, size));
                }
            }
            List<String> devs = new ArrayList<>();
            List<JsonNode> items = array(n, path, "devices");
            if (items.isEmpty()) {
                throw error(path + ".devices", "name at least one device");
            }
            for (int i = 0; i < items.size(); i++) {
                String p = path + ".devices[" + i + "]";
                Scenario.DeviceSpec d = deviceRef(items.get(i), p);
                DeviceKind want = switch (kind) {
                    case "virtual" -> DeviceKind.IOMMU;
                    case "cpu" -> DeviceKind.CPU;
                    default -> DeviceKind.ONE_TO_ONE;
                };
                if (d.kind() != want && !(kind.equals("virtual") && d.kind() == DeviceKind.CPU)) {
                    throw error(p, "device \"" + d.name() + "\" is " + kindName(d.kind()) + " device; a " + kind + " VCM takes "
                        + kindName(want).substring(kindName(want).indexOf(' ') + 1) + " devices");
                }
                String other = vcmOfDevice.putIfAbsent(d.name(), name);
                if (other != null) {
                    throw error(p, "device \"" + d.name() + "\" is already in VCM \"" + other
                        + "\"; a device has one address space in a scenario");
                }
                devs.add(d.name());
            }
            if (kind.equals("cpu") && devs.size() != 1) {
                throw error(path + ".devices", "a cpu VCM belongs to exactly one CPU device, got " + devs.size());
            }
            Vcm.Kind k = kind.equals("one-to-one") ? Vcm.Kind.ONE_TO_ONE : Vcm.Kind.VIRTUAL;
            Scenario.VcmSpec v = new Scenario.VcmSpec(name, k, kind.equals("cpu"), start, size, List.copyOf(devs));
            vcms.put(name, v);
            return v;
        }

        private Scenario.BufferSpec buffer(JsonNode n, String path) {
            keys(n, path, "name", "count", "size", "width", "height", "bytesPerPixel", "memoryType", "contiguous",
                "chunkPolicy", "vcms");
            String name = unique(n, path, buffers.keySet(), "buffer");
            int count = (int) integer(n, path, "count", 1, 1, 1024);
            long size;
            long pitch = 0;
            boolean frame = n.has("width") || n.has("height") || n.has("bytesPerPixel");
            if (frame == n.has("size")) {
                throw error(path, frame ? "give either size or width, height and bytesPerPixel, not both"
                    : "give size, or width, height and bytesPerPixel");
            }
            if (frame) {
                long width = integer(n, path, "width", null, 1, 1 << 16);
                long height = integer(n, path, "height", null, 1, 1 << 16);
                long bpp = integer(n, path, "bytesPerPixel", 4L, 1, 16);
                pitch = width * bpp;
                size = pitch * height;
            } else {
                size = size(n, path, "size", null, 1);
            }
            Scenario.MemorySpec m = memoryRef(required(n, path, "memoryType"), path + ".memoryType");
            if (size * count > m.size()) {
                throw error(path, count + " x " + size + " bytes do not fit memory type \"" + m.name() + "\" (" + m.size() + " bytes)");
            }
            boolean contiguous = bool(n, path, "contiguous", false);
            ChunkPolicy policy = n.has("chunkPolicy") ? policy(n.get("chunkPolicy"), path + ".chunkPolicy") : null;
            List<JsonNode> items = array(n, path, "vcms");
            if (items.isEmpty()) {
                throw error(path + ".vcms", "name at least one VCM to map the buffer into");
            }
            Set<String> in = new LinkedHashSet<>();
            for (int i = 0; i < items.size(); i++) {
                String p = path + ".vcms[" + i + "]";
                Scenario.VcmSpec v = vcmRef(items.get(i), p);
                if (!in.add(v.name())) {
                    throw error(p, "VCM \"" + v.name() + "\" is listed twice");
                }
                if (v.kind() == Vcm.Kind.ONE_TO_ONE) {
                    if (!contiguous) {
                        throw error(p, "one-to-one VCM \"" + v.name() + "\" needs physically contiguous memory; set \"contiguous\": true");
                    }
                    if (m.base() < v.start() || m.base() + m.size() > v.start() + v.size()) {
                        throw error(p, "one-to-one VCM \"" + v.name() + "\" does not cover memory type \"" + m.name() + "\"");
                    }
                }
            }
            Scenario.BufferSpec b = new Scenario.BufferSpec(name, count, size, pitch, m.name(), contiguous, policy, List.copyOf(in));
            buffers.put(name, b);
            return b;
        }

        private Scenario.StepSpec step(JsonNode n, String path) {
            keys(n, path, "device", "access", "buffer", "pattern", "burst", "stride", "accesses");
            Scenario.DeviceSpec d = deviceRef(required(n, path, "device"), path + ".device");
            Access access = choice(n, path, "access", Map.of("read", Access.READ, "write", Access.WRITE));
            Scenario.BufferSpec b = bufferRef(required(n, path, "buffer"), path + ".buffer");
            String vcm = vcmOfDevice.get(d.name());
            if (vcm == null || !b.vcms().contains(vcm)) {
                throw error(path, "device \"" + d.name() + "\" cannot reach buffer \"" + b.name() + "\": the buffer is mapped in "
                    + String.join(", ", b.vcms()) + (vcm == null ? " and the device is in no VCM" : " and the device uses " + vcm));
            }
            Scenario.Pattern pattern = choice(n, path, "pattern", Map.of("streaming", Scenario.Pattern.STREAMING,
                "strided", Scenario.Pattern.STRIDED, "random", Scenario.Pattern.RANDOM));
            long burst = size(n, path, "burst", 4096L, 1);
            if (burst > b.size() || burst > (1 << 24)) {
                throw error(path + ".burst", "burst=" + burst + " must be at most the buffer's size (" + b.size() + ") and 16M");
            }
            long stride = 0;
            long accesses = 0;
            if (pattern == Scenario.Pattern.STRIDED) {
                stride = n.has("stride") ? size(n, path, "stride", null, 1) : b.pitch();
                if (stride == 0) {
                    throw error(path + ".stride", "required: buffer \"" + b.name() + "\" has no width to take the row pitch from");
                }
                if (stride < burst || stride > b.size()) {
                    throw error(path + ".stride", "stride=" + stride + " must be at least burst=" + burst
                        + " and at most the buffer's size (" + b.size() + ")");
                }
            } else if (n.has("stride")) {
                throw error(path + ".stride", "only a strided step takes a stride");
            }
            if (pattern == Scenario.Pattern.RANDOM) {
                accesses = integer(n, path, "accesses", Math.max(1, b.size() / burst), 1, 1L << 32);
            } else if (n.has("accesses")) {
                throw error(path + ".accesses", "only a random step takes a number of accesses");
            }
            return new Scenario.StepSpec(d.name(), access, b.name(), pattern, (int) burst, stride, accesses);
        }

        // ---------------------------------------------------------------------------------------------
        // references

        private Scenario.MemorySpec memoryRef(JsonNode n, String path) {
            return ref(n, path, memory, "memory type");
        }

        private Scenario.DeviceSpec deviceRef(JsonNode n, String path) {
            return ref(n, path, devices, "device");
        }

        private Scenario.VcmSpec vcmRef(JsonNode n, String path) {
            return ref(n, path, vcms, "VCM");
        }

        private Scenario.BufferSpec bufferRef(JsonNode n, String path) {
            return ref(n, path, buffers, "buffer");
        }

        private static <T> T ref(JsonNode n, String path, Map<String, T> known, String what) {
            if (!n.isTextual()) {
                throw error(path, "expected the name of a " + what + " (a string), got " + describe(n));
            }
            T t = known.get(n.asText());
            if (t == null) {
                throw error(path, "unknown " + what + " \"" + n.asText() + "\"; known: "
                    + (known.isEmpty() ? "none (declare it above)" : String.join(", ", names(known.keySet()))));
            }
            return t;
        }

        private static String unique(JsonNode n, String path, Set<String> taken, String what) {
            String name = string(n, path, "name", null);
            if (name.isBlank()) {
                throw error(path + ".name", "must not be blank");
            }
            if (taken.contains(name)) {
                throw error(path + ".name", "another " + what + " is called \"" + name + "\"");
            }
            return name;
        }
    }

    // ---------------------------------------------------------------------------------------------
    // typed field readers: each error names the path

    private static <T> List<T> list(JsonNode n, String field, java.util.function.BiFunction<JsonNode, String, T> item) {
        List<JsonNode> items = array(n, "", field);
        if (items.isEmpty()) {
            throw error(field, "must not be empty");
        }
        List<T> out = new ArrayList<>();
        for (int i = 0; i < items.size(); i++) {
            String path = field + "[" + i + "]";
            object(items.get(i), path);
            out.add(item.apply(items.get(i), path));
        }
        return List.copyOf(out);
    }

    static void object(JsonNode n, String path) {
        if (!n.isObject()) {
            throw error(path, "expected an object, got " + describe(n));
        }
    }

    static void keys(JsonNode n, String path, String... known) {
        Set<String> k = Set.of(known);
        for (Iterator<String> it = n.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!k.contains(f)) {
                throw error(join(path, f), "unknown field; known: " + String.join(", ", known));
            }
        }
    }

    static JsonNode required(JsonNode n, String path, String field) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            throw error(join(path, field), "required");
        }
        return v;
    }

    static List<JsonNode> array(JsonNode n, String path, String field) {
        JsonNode v = required(n, path, field);
        if (!v.isArray()) {
            throw error(join(path, field), "expected an array, got " + describe(v));
        }
        List<JsonNode> out = new ArrayList<>();
        v.forEach(out::add);
        return out;
    }

    static String string(JsonNode n, String path, String field, String dflt) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            if (dflt == null) {
                throw error(join(path, field), "required");
            }
            return dflt;
        }
        if (!v.isTextual()) {
            throw error(join(path, field), "expected a string, got " + describe(v));
        }
        return v.asText();
    }

    static boolean bool(JsonNode n, String path, String field, boolean dflt) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isBoolean()) {
            throw error(join(path, field), "expected true or false, got " + describe(v));
        }
        return v.asBoolean();
    }

    static long integer(JsonNode n, String path, String field, Number dflt, long min, long max) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            if (dflt == null) {
                throw error(join(path, field), "required");
            }
            return dflt.longValue();
        }
        if (!v.isIntegralNumber() || !v.canConvertToLong()) {
            throw error(join(path, field), "expected a whole number, got " + describe(v));
        }
        long x = v.asLong();
        if (x < min || x > max) {
            throw error(join(path, field), field + "=" + x + " must be in [" + min + ", " + max + "]");
        }
        return x;
    }

    /** A byte count or address: a number, or a string in hex ({@code 0x...}) or decimal with a K/M/G suffix. */
    static long size(JsonNode n, String path, String field, Long dflt, long min) {
        JsonNode v = n.get(field);
        String p = join(path, field);
        if (v == null || v.isNull()) {
            if (dflt == null) {
                throw error(p, "required");
            }
            return dflt;
        }
        long x;
        if (v.isIntegralNumber() && v.canConvertToLong()) {
            x = v.asLong();
        } else if (v.isTextual()) {
            try {
                x = PagetableCommand.parseNumber(v.asText(), field);
            } catch (IllegalArgumentException e) {
                throw error(p, "\"" + v.asText() + "\" is not a size or address (e.g. 4096, \"64K\", \"2G\", \"0x8000_0000\")");
            }
        } else {
            throw error(p, "expected a number or a string such as \"64K\", got " + describe(v));
        }
        if (x < min) {
            throw error(p, field + "=" + x + " must be at least " + min);
        }
        return x;
    }

    private static ChunkPolicy policy(JsonNode n, String path) {
        if (!n.isTextual()) {
            throw error(path, "expected a chunk policy such as \"1M+64K+4K\", got " + describe(n));
        }
        try {
            return ChunkPolicy.parse(n.asText());
        } catch (IllegalArgumentException e) {
            throw error(path, "\"" + n.asText() + "\" is not a chunk policy (sizes largest first, e.g. \"1M+64K+4K\"): " + e.getMessage());
        }
    }

    private static <T> T choice(JsonNode n, String path, String field, Map<String, T> options) {
        String s = string(n, path, field, null);
        T t = options.get(s.toLowerCase(Locale.ROOT));
        if (t == null) {
            throw error(join(path, field), "unknown " + field + " \"" + s + "\"; known: " + String.join(", ", names(options.keySet())));
        }
        return t;
    }

    private static List<String> names(java.util.Collection<String> names) {
        return names.stream().sorted().toList();
    }

    private static String kindName(DeviceKind k) {
        return switch (k) {
            case IOMMU -> "an iommu";
            case CPU -> "a cpu";
            case ONE_TO_ONE -> "a one-to-one";
        };
    }

    static String describe(JsonNode n) {
        String s = n.toString();
        return n.getNodeType().name().toLowerCase(Locale.ROOT) + " " + (s.length() > 40 ? s.substring(0, 37) + "..." : s);
    }

    static String join(String path, String field) {
        return path.isEmpty() ? field : path + "." + field;
    }

    static ScenarioException error(String path, String message) {
        return new ScenarioException(path + ": " + message);
    }
}
