package dev.vcmm.cli;

import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.DeviceKind;
import dev.vcmm.Vcm;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The scenario schema: the default scenario parses; each bad input is refused naming its field. */
class ScenarioParserTest {

    private static final JsonMapper MAPPER = JsonMapper.builder().enable(JsonReadFeature.ALLOW_JAVA_COMMENTS).build();

    /** @return the message of parsing the default scenario after {@code change} */
    private static String error(Consumer<ObjectNode> change) {
        ObjectNode root;
        try {
            root = (ObjectNode) MAPPER.readTree(Scenario.defaultText());
        } catch (Exception e) {
            throw new AssertionError(e);
        }
        change.accept(root);
        return assertThrows(ScenarioParser.ScenarioException.class, () -> ScenarioParser.parse(root.toString(), "test.json"))
            .getMessage();
    }

    private static ObjectNode at(ObjectNode root, String array, int i) {
        return (ObjectNode) root.get(array).get(i);
    }

    private static void assertStarts(String prefix, String message) {
        assertTrue(message.startsWith(prefix), "expected '" + prefix + "...', got: " + message);
    }

    @Test
    void shouldParseTheDefaultScenario() {
        Scenario s = Scenario.defaultScenario();
        assertEquals("camera-to-display", s.name());
        assertEquals(List.of(ChunkPolicy.PAGES_4K, ChunkPolicy.parse("64K+4K"), ChunkPolicy.parse("1M+64K+4K"), ChunkPolicy.VCMM),
            s.policies());
        assertEquals(DeviceKind.ONE_TO_ONE, s.device("display").kind());
        assertEquals("armv7-short", s.device("camera").format().name());
        assertEquals(32, s.device("camera").iotlbEntries());
        assertEquals(3840L * 2160 * 4, s.buffer("raw").size());
        assertEquals(3840L * 4, s.buffer("raw").pitch());
        assertTrue(s.buffer("preview").contiguous());
        assertEquals(Vcm.Kind.ONE_TO_ONE, s.vcms().get(1).kind());
        assertTrue(s.vcms().get(2).cpu());
        assertEquals(3840L * 4, s.workload().get(1).stride(), "a strided step takes the row pitch by default");
        assertEquals(s.buffer("frame").size() / 1024, s.workload().get(4).accesses(), "a random step moves one buffer by default");
        assertEquals(512L << 20, s.memoryTypes().getFirst().fragment());
        assertTrue(s.memoryTypes().getFirst().zeroOnHandoff(), "memory is zeroed on handoff unless a scenario opts out");
    }

    @Test
    void shouldReadZeroOnHandoffAndRefuseANonBoolean() throws Exception {
        ObjectNode root = (ObjectNode) MAPPER.readTree(Scenario.defaultText());
        at(root, "memoryTypes", 0).put("zeroOnHandoff", false);
        assertTrue(!ScenarioParser.parse(root.toString(), "test.json").memoryTypes().getFirst().zeroOnHandoff());
        String m = error(r -> at(r, "memoryTypes", 0).put("zeroOnHandoff", "no"));
        assertStarts("memoryTypes[0].zeroOnHandoff", m);
    }

    @Test
    void shouldNameTheUnknownFormatAndListTheKnownOnes() {
        String m = error(r -> at(r, "devices", 2).put("format", "arm65"));
        assertStarts("devices[2].format: unknown format \"arm65\"; known: arm64-4k, armv7-short, x86-64", m);
    }

    @Test
    void shouldRefuseUnknownFieldsListingTheKnownOnes() {
        assertStarts("devices[1].fromat: unknown field; known: name, kind, format, iotlb, secure",
            error(r -> at(r, "devices", 1).put("fromat", "x86-64")));
        assertStarts("frame: unknown field", error(r -> r.put("frame", 3)));
    }

    @Test
    void shouldRefuseABadIotlbGeometry() {
        assertStarts("devices[0].iotlb: entries=48 ways=5",
            error(r -> ((ObjectNode) at(r, "devices", 0).get("iotlb")).put("entries", 48).put("ways", 5)));
        assertStarts("devices[3].iotlb: a one-to-one device translates nothing",
            error(r -> at(r, "devices", 3).putObject("iotlb").put("entries", 8)));
    }

    @Test
    void shouldRefuseBadSizesAndNumbers() {
        assertStarts("memoryTypes[0].size: \"lots\" is not a size or address", error(r -> at(r, "memoryTypes", 0).put("size", "lots")));
        assertStarts("frames: frames=0 must be in [1, ", error(r -> r.put("frames", 0)));
        assertStarts("frames: expected a whole number, got string", error(r -> r.put("frames", "four")));
        assertStarts("buffers[0].width: width=0 must be in [1, ", error(r -> at(r, "buffers", 0).put("width", 0)));
        assertStarts("workload[0].burst: burst=", error(r -> at(r, "workload", 0).put("burst", "1G")));
    }

    @Test
    void shouldRefuseMissingFields() {
        assertStarts("name: required", error(r -> r.remove("name")));
        assertStarts("devices: required", error(r -> r.remove("devices")));
        assertStarts("workload: must not be empty", error(r -> r.putArray("workload")));
        assertStarts("devices[2].format: required", error(r -> at(r, "devices", 2).remove("format")));
        assertStarts("buffers[3]: give size, or width, height and bytesPerPixel", error(r -> at(r, "buffers", 3).remove("size")));
    }

    @Test
    void shouldRefuseUnknownNamesListingTheKnownOnes() {
        assertStarts("vcms[1].devices[0]: unknown device \"dispaly\"; known: camera, cpu, display, encoder, isp",
            error(r -> ((ArrayNode) at(r, "vcms", 1).get("devices")).set(0, "dispaly")));
        assertStarts("buffers[0].memoryType: unknown memory type \"dram\"", error(r -> at(r, "buffers", 0).put("memoryType", "dram")));
        assertStarts("workload[2].buffer: unknown buffer \"yuv\"", error(r -> at(r, "workload", 2).put("buffer", "yuv")));
        assertStarts("pageTableMemory: unknown memory type \"sram\"", error(r -> r.put("pageTableMemory", "sram")));
        assertStarts("workload[0].pattern: unknown pattern \"zigzag\"; known: random, streaming, strided",
            error(r -> at(r, "workload", 0).put("pattern", "zigzag")));
    }

    @Test
    void shouldRefuseADuplicateName() {
        assertStarts("devices[1].name: another device is called \"camera\"", error(r -> at(r, "devices", 1).put("name", "camera")));
    }

    @Test
    void shouldRefuseABadChunkPolicy() {
        assertStarts("policies[1]: \"3K+1K\" is not a chunk policy", error(r -> ((ArrayNode) r.get("policies")).set(1, "3K+1K")));
        assertStarts("policies[1]: policy 4K is listed twice", error(r -> ((ArrayNode) r.get("policies")).set(1, "4K")));
        assertStarts("buffers[0].chunkPolicy: \"big\" is not a chunk policy", error(r -> at(r, "buffers", 0).put("chunkPolicy", "big")));
    }

    @Test
    void shouldRefuseAScatteredBufferInAOneToOneVcm() {
        assertStarts("buffers[2].vcms[1]: one-to-one VCM \"scanout\" needs physically contiguous memory",
            error(r -> at(r, "buffers", 2).put("contiguous", false)));
    }

    @Test
    void shouldRefuseDevicesOfTheWrongKindOrInTwoVcms() {
        assertStarts("vcms[0].devices[3]: device \"display\" is a one-to-one device; a virtual VCM takes iommu devices",
            error(r -> ((ArrayNode) at(r, "vcms", 0).get("devices")).add("display")));
        assertStarts("vcms[2].devices[1]: device \"camera\" is an iommu device; a cpu VCM takes cpu devices",
            error(r -> ((ArrayNode) at(r, "vcms", 2).get("devices")).add("camera")));
        assertStarts("vcms[2].devices[0]: device \"cpu\" is already in VCM \"media\"",
            error(r -> ((ArrayNode) at(r, "vcms", 0).get("devices")).add("cpu")));
    }

    @Test
    void shouldRefuseAStepWhoseDeviceCannotReachItsBuffer() {
        assertStarts("workload[6]: device \"display\" cannot reach buffer \"raw\": the buffer is mapped in media and the device uses scanout",
            error(r -> at(r, "workload", 6).put("buffer", "raw")));
    }

    @Test
    void shouldRefuseStrideAndAccessesWhereTheyDoNotApply() {
        assertStarts("workload[7].stride: required: buffer \"bitstream\" has no width",
            error(r -> at(r, "workload", 7).put("pattern", "strided")));
        assertStarts("workload[0].stride: only a strided step takes a stride", error(r -> at(r, "workload", 0).put("stride", 4096)));
        assertStarts("workload[0].accesses: only a random step", error(r -> at(r, "workload", 0).put("accesses", 10)));
        assertStarts("workload[1].stride: stride=128 must be at least burst=256", error(r -> at(r, "workload", 1).put("stride", 128)));
    }

    @Test
    void shouldRefuseOverlappingOrBadlyFragmentedMemory() {
        assertStarts("memoryTypes[1].base: memory type \"pt\" overlaps memory type \"ddr\"",
            error(r -> at(r, "memoryTypes", 1).put("base", "0x9000_0000")));
        assertStarts("memoryTypes[0].fragment: fragment=", error(r -> at(r, "memoryTypes", 0).put("fragment", "2G")));
    }

    @Test
    void shouldSayWhereTheJsonIsBroken() {
        String m = assertThrows(ScenarioParser.ScenarioException.class,
            () -> ScenarioParser.parse("{\n  \"name\": \"x\",\n  \"frames\": ,\n}", "broken.json")).getMessage();
        assertStarts("broken.json: not valid JSON: line 3, column ", m);
        assertStarts("scenario: expected an object, got array", assertThrows(ScenarioParser.ScenarioException.class,
            () -> ScenarioParser.parse("[1, 2]", "a.json")).getMessage());
        assertTrue(assertThrows(ScenarioParser.ScenarioException.class, () -> ScenarioParser.parse("{\"name\": \"a\", \"name\": \"b\"}", "d.json"))
            .getMessage().contains("Duplicate field 'name'"));
    }

    @Test
    void shouldScaleBuffersAndKeepTheirRows() {
        Scenario s = Scenario.defaultScenario().resized(1, 0.25);
        assertEquals(1, s.frames());
        assertEquals(960L * 4, s.buffer("raw").pitch());
        assertEquals(960L * 4 * 540, s.buffer("raw").size());
        assertEquals(960L * 4, s.workload().get(1).stride());
        assertEquals(256L << 10, s.buffer("bitstream").size());
    }
}
