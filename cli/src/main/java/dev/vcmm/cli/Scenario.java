package dev.vcmm.cli;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.DeviceKind;
import dev.vcmm.Vcm;
import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.PageTableFormat;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * A simulated SoC scenario, validated: memory types, devices, VCMs with their associations, buffers, and a
 * workload of DMA steps, run once per chunk policy by {@link ScenarioRunner}. Parsed from JSON by
 * {@link ScenarioParser}; the schema is documented there and in the README.
 *
 * <p><b>Thread-safety:</b> immutable records.
 *
 * @param name        a short name for reports
 * @param description one line for reports, may be empty
 * @param frames      how many times the workload runs per policy (a frame uses buffer {@code frame % count})
 * @param seed        the seed of the random access pattern (the same accesses under every policy)
 * @param policies    the chunk policies to compare, the first being the baseline of the verdict
 * @param memoryTypes the physical memory
 * @param pageTableMemory the memory type page tables come from
 * @param devices     the bus masters
 * @param vcms        the address spaces and the devices associated with each
 * @param buffers     the buffers, each mapped into one or more VCMs
 * @param workload    the DMA steps of one frame, in order
 */
record Scenario(String name, String description, int frames, long seed, List<ChunkPolicy> policies,
                List<MemorySpec> memoryTypes, String pageTableMemory, List<DeviceSpec> devices, List<VcmSpec> vcms,
                List<BufferSpec> buffers, List<StepSpec> workload) {

    /** The class-path resource of the embedded default scenario ({@code ./vcmm demo}). */
    static final String DEFAULT_RESOURCE = "default-scenario.json";

    /**
     * A memory type.
     *
     * @param fragment bytes at the start of the memory type to fragment before each run: taken as 4K pages and
     *                 every other page given back, as a long-running system leaves memory; 0 for none
     * @param zeroOnHandoff whether memory is zeroed when it is handed to a new owner (the default; false trades
     *                 that isolation for speed, see {@code MemoryType.Builder.zeroOnHandoff})
     */
    record MemorySpec(String name, long base, long size, boolean secure, long fragment, boolean zeroOnHandoff) {
    }

    /** A device; {@code format} is {@code null} for a one-to-one device, the IOTLB is ignored for one. */
    record DeviceSpec(String name, DeviceKind kind, PageTableFormat format, int iotlbEntries, int iotlbWays,
                      boolean secure) {
    }

    /**
     * A VCM and the devices associated with it (and activated). A CPU VCM has exactly one device, a CPU.
     *
     * @param cpu whether this is a CPU VCM ({@code Vcmm.createCpuVcm})
     */
    record VcmSpec(String name, Vcm.Kind kind, boolean cpu, long start, long size, List<String> devices) {
    }

    /**
     * {@code count} buffers of {@code size} bytes each.
     *
     * @param pitch      bytes per row for frame buffers (width x bytesPerPixel), 0 otherwise
     * @param contiguous physically contiguous (required to map it into a one-to-one VCM)
     * @param policy     a fixed chunk policy, or {@code null} to use the policy under test
     * @param vcms       the VCMs it is mapped into
     */
    record BufferSpec(String name, int count, long size, long pitch, String memoryType, boolean contiguous,
                      ChunkPolicy policy, List<String> vcms) {
    }

    /** How a step walks its buffer. */
    enum Pattern {
        /** Front to back in bursts. */
        STREAMING,
        /** Column by column: a burst from each row of {@code stride} bytes, then the next column (a rotation or a vertical filter). */
        STRIDED,
        /** Bursts at random burst-aligned offsets. */
        RANDOM
    }

    /**
     * One DMA step of a frame.
     *
     * @param burst    bytes per device access
     * @param stride   bytes between rows for {@link Pattern#STRIDED}, 0 otherwise
     * @param accesses bursts of a {@link Pattern#RANDOM} step, 0 otherwise
     */
    record StepSpec(String device, Access access, String buffer, Pattern pattern, int burst, long stride,
                    long accesses) {
    }

    /** @return the buffer called {@code name} (the parser has checked that it exists) */
    BufferSpec buffer(String name) {
        return buffers.stream().filter(b -> b.name().equals(name)).findFirst().orElseThrow();
    }

    /** @return the device called {@code name} (the parser has checked that it exists) */
    DeviceSpec device(String name) {
        return devices.stream().filter(d -> d.name().equals(name)).findFirst().orElseThrow();
    }

    /** @return the embedded default scenario */
    static Scenario defaultScenario() {
        return ScenarioParser.parse(defaultText(), "(default scenario)");
    }

    /** @return the JSON text of the embedded default scenario */
    static String defaultText() {
        try (InputStream in = Scenario.class.getResourceAsStream(DEFAULT_RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("the default scenario " + DEFAULT_RESOURCE + " is missing from the jar");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the default scenario", e);
        }
    }

    /**
     * @return a copy with {@code frames} frames (if positive) and every buffer scaled by {@code scale} in each
     * dimension (frame buffers keep whole rows; others scale their size by {@code scale * scale}), rounded up to 4K
     */
    Scenario resized(int frames, double scale) {
        List<BufferSpec> scaled = scale == 1.0 ? buffers : scaledBuffers(scale);
        List<StepSpec> steps = workload;
        if (scale != 1.0) {
            steps = workload.stream().map(s -> {
                BufferSpec b = scaled.stream().filter(x -> x.name().equals(s.buffer())).findFirst().orElseThrow();
                long stride = s.pattern() == Pattern.STRIDED ? (b.pitch() > 0 ? b.pitch() : Math.max(s.burst(), Math.round(s.stride() * scale) & ~63L)) : 0;
                long accesses = s.pattern() == Pattern.RANDOM ? Math.max(1, Math.round(s.accesses() * scale * scale)) : 0;
                return new StepSpec(s.device(), s.access(), s.buffer(), s.pattern(), Math.min(s.burst(), (int) Math.min(Integer.MAX_VALUE, b.size())), stride, accesses);
            }).toList();
        }
        return new Scenario(name, description, frames > 0 ? frames : this.frames, seed, policies, memoryTypes,
            pageTableMemory, devices, vcms, scaled, steps);
    }

    private List<BufferSpec> scaledBuffers(double scale) {
        return buffers.stream().map(b -> {
            long size;
            long pitch = b.pitch();
            if (b.pitch() > 0) {
                pitch = Math.max(64, Math.round(b.pitch() * scale) & ~63L);
                long rows = Math.max(1, Math.round(b.size() / (double) b.pitch() * scale));
                size = pitch * rows;
            } else {
                size = Math.max(4096, Math.round(b.size() * scale * scale));
            }
            return new BufferSpec(b.name(), b.count(), size, pitch, b.memoryType(), b.contiguous(), b.policy(), b.vcms());
            }).toList();
    }

    /** @return a copy that compares {@code policies} instead */
    Scenario withPolicies(List<ChunkPolicy> policies) {
        return new Scenario(name, description, frames, seed, List.copyOf(policies), memoryTypes, pageTableMemory, devices,
            vcms, buffers, workload);
    }
}
