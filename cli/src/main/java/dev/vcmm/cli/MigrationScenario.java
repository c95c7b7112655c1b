package dev.vcmm.cli;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.pagetable.DirtyBits;
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
 * A live-migration scenario: a guest's memory, mapped in one VCM that assigned devices write into, is copied to a
 * second memory type in rounds of dirty pages ({@code DirtyTracking.readAndClear}) while the devices keep writing,
 * until a round's dirty set is small enough; then the devices stop and a last round copies the rest. Run by
 * {@link MigrationRunner}; a scenario file is one when its top-level object has a {@code "migration"} member
 * (schema in docs/demo.md).
 *
 * <p><b>Thread-safety:</b> immutable records.
 *
 * @param name        a short name for reports
 * @param description one line for reports, may be empty
 * @param seed        the seed of the devices' writes
 * @param memoryTypes the physical memory
 * @param pageTableMemory where page tables come from
 * @param guest       the guest memory: its memory type, size, device address and chunk policy
 * @param destination the memory type the copy goes to
 * @param devices     the devices that keep writing
 * @param throttle    the fraction by which each round cuts the devices' writes (auto-converge), in [0, 1)
 * @param stopBelow   the dirty bytes at or below which the pre-copy rounds end
 * @param maxRounds   the most pre-copy rounds before the stop-and-copy, converged or not
 */
record MigrationScenario(String name, String description, long seed, List<Scenario.MemorySpec> memoryTypes,
                         String pageTableMemory, Guest guest, String destination, List<Writer> devices, double throttle,
                         long stopBelow, int maxRounds) {

    /** The guest's memory: {@code size} bytes of {@code memoryType} at device address {@code address}. */
    record Guest(String memoryType, long size, long address, ChunkPolicy policy) {
    }

    /**
     * A device that writes {@code writesPerRound} bursts of {@code burst} bytes per round (before throttling) at random
     * burst-aligned offsets of its hot set {@code [hotOffset, hotOffset + hotSet)} of the guest memory.
     */
    record Writer(String name, PageTableFormat format, long hotOffset, long hotSet, int writesPerRound, int burst) {
    }

    /** {@return whether {@code json} is a migration scenario (a top-level {@code "migration"} object); false if unreadable} */
    static boolean isMigration(String json) {
        try {
            JsonNode root = ScenarioParser.MAPPER.readTree(json);
            return root != null && root.isObject() && root.has("migration");
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
    static MigrationScenario parse(String json, String source) {
        JsonNode root;
        try {
            root = ScenarioParser.MAPPER.readTree(json);
        } catch (JacksonException e) {
            throw new ScenarioParser.ScenarioException(source + ": not valid JSON: " + e.getOriginalMessage());
        }
        object(root, "");
        keys(root, "", "name", "description", "migration");
        String name = string(root, "", "name", "migration");
        String description = string(root, "", "description", "");
        JsonNode m = required(root, "", "migration");
        object(m, "migration");
        keys(m, "migration", "seed", "memoryTypes", "pageTableMemory", "guest", "destination", "devices", "throttle",
            "stopBelow", "maxRounds");
        long seed = integer(m, "migration", "seed", 1, Long.MIN_VALUE, Long.MAX_VALUE);
        List<Scenario.MemorySpec> types = new ArrayList<>();
        Set<String> typeNames = new HashSet<>();
        List<JsonNode> typeNodes = array(m, "migration", "memoryTypes");
        for (int i = 0; i < typeNodes.size(); i++) {
            String p = "migration.memoryTypes[" + i + "]";
            JsonNode t = typeNodes.get(i);
            object(t, p);
            keys(t, p, "name", "base", "size");
            String n = string(t, p, "name", null);
            if (!typeNames.add(n)) {
                throw error(p + ".name", "\"" + n + "\" is taken");
            }
            types.add(new Scenario.MemorySpec(n, size(t, p, "base", null, 0), size(t, p, "size", null, 4096), false, 0, true));
        }
        String pt = memoryName(m, "migration", "pageTableMemory", typeNames);
        JsonNode g = required(m, "migration", "guest");
        object(g, "migration.guest");
        keys(g, "migration.guest", "memoryType", "size", "address", "policy");
        String guestType = memoryName(g, "migration.guest", "memoryType", typeNames);
        long guestSize = size(g, "migration.guest", "size", null, 4096);
        long guestAddress = size(g, "migration.guest", "address", 0x4000_0000L, 0);
        if (((guestSize | guestAddress) & 4095) != 0) {
            throw error("migration.guest", "size and address must be multiples of 4K");
        }
        ChunkPolicy policy;
        String policyText = string(g, "migration.guest", "policy", "4K");
        try {
            policy = ChunkPolicy.parse(policyText);
        } catch (IllegalArgumentException e) {
            throw error("migration.guest.policy", "\"" + policyText + "\" is not a chunk policy: " + e.getMessage());
        }
        String destination = memoryName(m, "migration", "destination", typeNames);
        if (destination.equals(guestType)) {
            throw error("migration.destination", "must be another memory type than the guest's (" + guestType + ")");
        }
        List<Writer> writers = new ArrayList<>();
        Set<String> deviceNames = new HashSet<>();
        List<JsonNode> devs = array(m, "migration", "devices");
        if (devs.isEmpty()) {
            throw error("migration.devices", "must not be empty");
        }
        for (int i = 0; i < devs.size(); i++) {
            String p = "migration.devices[" + i + "]";
            JsonNode d = devs.get(i);
            object(d, p);
            keys(d, p, "name", "format", "hotOffset", "hotSet", "writesPerRound", "burst");
            String n = string(d, p, "name", null);
            if (!deviceNames.add(n)) {
                throw error(p + ".name", "\"" + n + "\" is taken");
            }
            String f = string(d, p, "format", null);
            PageTableFormat format;
            try {
                format = PageTableFormats.byName(f);
            } catch (IllegalArgumentException e) {
                throw error(p + ".format", e.getMessage());
            }
            if (DirtyBits.of(format) == null) {
                throw error(p + ".format", f + " has no hardware dirty state: use an arm64, x86-64 or RISC-V format");
            }
            long hotOffset = size(d, p, "hotOffset", 0L, 0);
            long hotSet = size(d, p, "hotSet", guestSize, 4096);
            int burst = (int) integer(d, p, "burst", 4096, 8, 4096);
            if (Long.bitCount(burst) != 1) {
                throw error(p + ".burst", "burst=" + burst + " must be a power of two");
            }
            if (hotOffset % burst != 0 || hotSet % burst != 0 || hotOffset > guestSize || hotSet > guestSize - hotOffset) {
                throw error(p, "the hot set [hotOffset, hotOffset + hotSet) must be burst-aligned and inside the guest's "
                    + guestSize + " bytes");
            }
            writers.add(new Writer(n, format, hotOffset, hotSet, (int) integer(d, p, "writesPerRound", null, 0, 10_000_000),
                burst));
        }
        JsonNode th = m.get("throttle");
        double throttle = 0.5;
        if (th != null && !th.isNull()) {
            if (!th.isNumber() || th.asDouble() < 0 || th.asDouble() >= 1) {
                throw error("migration.throttle", "expected a number in [0, 1), got " + ScenarioParser.describe(th));
            }
            throttle = th.asDouble();
        }
        long stopBelow = size(m, "migration", "stopBelow", 256L << 10, 0);
        int maxRounds = (int) integer(m, "migration", "maxRounds", 30, 1, 10_000);
        return new MigrationScenario(name, description, seed, List.copyOf(types), pt,
            new Guest(guestType, guestSize, guestAddress, policy), destination, List.copyOf(writers), throttle, stopBelow, maxRounds);
    }

    private static String memoryName(JsonNode n, String path, String field, Set<String> known) {
        String v = string(n, path, field, null);
        if (!known.contains(v)) {
            throw error(path + "." + field, "no memory type \"" + v + "\"; known: " + String.join(", ", new java.util.TreeSet<>(known)));
        }
        return v;
    }
}
