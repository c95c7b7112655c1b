package dev.vcmm.cli;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.PageTableFormats;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static dev.vcmm.cli.ScenarioParser.array;
import static dev.vcmm.cli.ScenarioParser.error;
import static dev.vcmm.cli.ScenarioParser.integer;
import static dev.vcmm.cli.ScenarioParser.keys;
import static dev.vcmm.cli.ScenarioParser.object;
import static dev.vcmm.cli.ScenarioParser.required;
import static dev.vcmm.cli.ScenarioParser.size;
import static dev.vcmm.cli.ScenarioParser.string;

/**
 * A demand-paging scenario: a device walks a large buffer of which no page is backed, with page requests
 * ({@code PageRequests}, ATS/PRI) enabled; a handler thread backs each page on request with memory it fills itself, and
 * the walk checks that every byte it read is what the handler put there. Run by {@link DemandPagingRunner}; a scenario
 * file is one when its top-level object has a {@code "demandPaging"} member (schema in docs/demo.md).
 *
 * <p><b>Thread-safety:</b> immutable records.
 *
 * @param name            a short name for reports
 * @param description     one line for reports, may be empty
 * @param seed            the seed of the bytes the handler writes
 * @param memoryTypes     the physical memory
 * @param pageTableMemory where page tables come from
 * @param memoryType      where the handler takes the pages from
 * @param address         the buffer's device address
 * @param bufferSize      the buffer's size
 * @param pageSize        the unit the handler backs on one request (a reservation of its own), a power of two >= 4K
 * @param format          the device's page-table format
 * @param threads         the device's DMA threads, each walking an interleaved share of the pages
 * @param readBytes       the bytes of one read, a power of two in [8, pageSize]
 * @param queue           the page-request queue's capacity
 */
record DemandPagingScenario(String name, String description, long seed, List<Scenario.MemorySpec> memoryTypes,
                            String pageTableMemory, String memoryType, long address, long bufferSize, long pageSize,
                            PageTableFormat format, int threads, int readBytes, int queue) {

    /** {@return whether {@code json} is a demand-paging scenario (a top-level {@code "demandPaging"} object); false if unreadable} */
    static boolean isDemandPaging(String json) {
        try {
            JsonNode root = ScenarioParser.MAPPER.readTree(json);
            return root != null && root.isObject() && root.has("demandPaging");
        } catch (JacksonException e) {
            return false; // the scenario parser reports it
        }
    }

    /**
     * @param json   the scenario text
     * @param source where it came from, for messages
     * @return the validated scenario
     * @throws ScenarioParser.ScenarioException naming the field and what is wrong with it
     */
    static DemandPagingScenario parse(String json, String source) {
        JsonNode root;
        try {
            root = ScenarioParser.MAPPER.readTree(json);
        } catch (JacksonException e) {
            throw new ScenarioParser.ScenarioException(source + ": not valid JSON: " + e.getOriginalMessage());
        }
        object(root, "");
        keys(root, "", "name", "description", "demandPaging");
        String name = string(root, "", "name", "demand-paging");
        String description = string(root, "", "description", "");
        String p = "demandPaging";
        JsonNode m = required(root, "", p);
        object(m, p);
        keys(m, p, "seed", "memoryTypes", "pageTableMemory", "buffer", "device", "queue");
        long seed = integer(m, p, "seed", 1, Long.MIN_VALUE, Long.MAX_VALUE);
        List<Scenario.MemorySpec> types = new ArrayList<>();
        Set<String> typeNames = new HashSet<>();
        List<JsonNode> typeNodes = array(m, p, "memoryTypes");
        for (int i = 0; i < typeNodes.size(); i++) {
            String q = p + ".memoryTypes[" + i + "]";
            JsonNode t = typeNodes.get(i);
            object(t, q);
            keys(t, q, "name", "base", "size");
            String n = string(t, q, "name", null);
            if (!typeNames.add(n)) {
                throw error(q + ".name", "\"" + n + "\" is taken");
            }
            types.add(new Scenario.MemorySpec(n, size(t, q, "base", null, 0), size(t, q, "size", null, 4096), false, 0, true));
        }
        String pt = memoryName(m, p, "pageTableMemory", typeNames);
        String bp = p + ".buffer";
        JsonNode b = required(m, p, "buffer");
        object(b, bp);
        keys(b, bp, "memoryType", "address", "size", "pageSize");
        String type = memoryName(b, bp, "memoryType", typeNames);
        long address = size(b, bp, "address", 0x4000_0000L, 0);
        long bufferSize = size(b, bp, "size", null, 4096);
        long pageSize = size(b, bp, "pageSize", 4096L, 4096);
        if (Long.bitCount(pageSize) != 1) {
            throw error(bp + ".pageSize", "pageSize=" + pageSize + " must be a power of two");
        }
        if (address % pageSize != 0 || bufferSize % pageSize != 0) {
            throw error(bp, "address and size must be multiples of pageSize=" + pageSize);
        }
        String dp = p + ".device";
        JsonNode d = required(m, p, "device");
        object(d, dp);
        keys(d, dp, "format", "threads", "readBytes");
        String f = string(d, dp, "format", "arm64-4k");
        PageTableFormat format;
        try {
            format = PageTableFormats.byName(f);
        } catch (IllegalArgumentException e) {
            throw error(dp + ".format", e.getMessage());
        }
        int threads = (int) integer(d, dp, "threads", 2, 1, 64);
        int readBytes = (int) integer(d, dp, "readBytes", 4096, 8, pageSize);
        if (Long.bitCount(readBytes) != 1) {
            throw error(dp + ".readBytes", "readBytes=" + readBytes + " must be a power of two");
        }
        int queue = (int) integer(m, p, "queue", 64, 1, 1 << 20);
        return new DemandPagingScenario(name, description, seed, List.copyOf(types), pt, type, address, bufferSize, pageSize,
            format, threads, readBytes, queue);
    }

    private static String memoryName(JsonNode n, String path, String field, Set<String> known) {
        String v = string(n, path, field, null);
        if (!known.contains(v)) {
            throw error(path + "." + field, "no memory type \"" + v + "\"; known: " + String.join(", ", new java.util.TreeSet<>(known)));
        }
        return v;
    }
}
