package dev.vcmm.cli;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceKind;
import dev.vcmm.DeviceOptions;
import dev.vcmm.DeviceStats;
import dev.vcmm.GraphExport;
import dev.vcmm.MemoryType;
import dev.vcmm.PageTableView;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.zip.CRC32;

/**
 * Runs a {@link Scenario} once per chunk policy, each on a fresh {@link Vcmm}, and measures what the policy
 * costs and saves: leaf page-table entries written, page-table memory, IOTLB misses per MiB moved, walks,
 * faults, map and unmap time, DMA throughput. Every byte a device writes is a function of (write, offset), so
 * every byte a device reads is checked against what its producer wrote.
 *
 * <p>One policy run: build the memory types (and fragment them if asked), the devices, the VCMs with their
 * associations (activated); allocate every buffer (the policy under test unless the buffer fixes its own)
 * and back it in each of its VCMs (timed: map); take the measurements of the tables; run the workload for
 * the frames; read the device counters; unback everything (timed: unmap) and close.
 *
 * <p><b>Thread-safety:</b> one run at a time per instance; {@link #stop()} may be called from any thread (a
 * shutdown hook): the run then finishes its current burst, stops, tears down, and returns what it measured,
 * marked incomplete.
 */
final class ScenarioRunner {

    /** Told after every step. */
    interface Progress {
        /**
         * @param policy the policy being run
         * @param done   steps done over all policies
         * @param total  steps of the whole run
         * @param frame  the frame of the step, counting from 0
         */
        void step(ChunkPolicy policy, long done, long total, int frame);
    }

    /**
     * One device's counters under one policy.
     *
     * @param bytes  bytes the device moved (read plus written)
     * @param nanos  time spent in its DMA calls
     */
    record DeviceResult(String name, DeviceKind kind, String format, int iotlbEntries, int iotlbWays, long bytes,
                        long hits, long misses, long faults, long nanos) {

        /** @return IOTLB misses per MiB the device moved (0 for one-to-one) */
        double missesPerMiB() {
            return bytes == 0 ? 0 : misses / (bytes / (double) (1 << 20));
        }
    }

    /**
     * One step of one frame as it ran.
     *
     * @param crc CRC32 of the bytes in buffer order, for streaming steps that covered the whole buffer; -1 otherwise
     */
    record Transfer(int frame, int step, String device, Access access, String buffer, int index, long bytes, long crc) {
    }

    /**
     * What one policy run measured.
     *
     * @param frames          frames completed
     * @param complete        all frames ran (not stopped)
     * @param pteWrites       leaf page-table entries written to map every buffer into every table (counted by walking)
     * @param pageTableBytes  bytes of page tables with every buffer mapped
     * @param chunks          physical chunks of all buffers
     * @param mapNanos        time in {@code back} (writing PTEs into every table of each buffer's VCMs)
     * @param unmapNanos      time in {@code unback} (clearing PTEs and invalidating IOTLBs)
     * @param iotlbBytes      bytes moved by devices with an IOTLB (the denominator of misses per MiB)
     * @param verifiedBytes   bytes read and checked against what their producer wrote
     * @param firstMismatch   the first read that differed from what its producer wrote, or {@code null}
     */
    record PolicyResult(ChunkPolicy policy, int frames, boolean complete, long pteWrites, long pageTableBytes, long chunks,
                        long mapNanos, long unmapNanos, long iotlbBytes, long verifiedBytes, long mismatches,
                        String firstMismatch, List<DeviceResult> devices, List<Transfer> transfers, String dot) {

        long bytes() {
            return devices.stream().mapToLong(DeviceResult::bytes).sum();
        }

        long misses() {
            return devices.stream().mapToLong(DeviceResult::misses).sum();
        }

        /** @return hardware walks: one per IOTLB miss in this model (a fault retried walks again, and misses again) */
        long walks() {
            return misses();
        }

        long faults() {
            return devices.stream().mapToLong(DeviceResult::faults).sum();
        }

        long dmaNanos() {
            return devices.stream().mapToLong(DeviceResult::nanos).sum();
        }

        double iotlbMissesPerMiB() {
            return iotlbBytes == 0 ? 0 : misses() / (iotlbBytes / (double) (1 << 20));
        }

        double dmaBytesPerSecond() {
            long n = dmaNanos();
            return n == 0 ? 0 : bytes() * 1e9 / n;
        }
    }

    /** The whole run: one result per policy that started, in order. */
    record Result(Scenario scenario, List<PolicyResult> policies, boolean interrupted) {
    }

    private static final int PAGE = 4096;

    private final AtomicBoolean stop = new AtomicBoolean();

    /** Asks the run to stop after the current burst; it returns what it measured so far. */
    void stop() {
        stop.set(true);
    }

    boolean isStopped() {
        return stop.get();
    }

    /** Runs every policy of {@code scenario}, in order, until done or stopped, after a warm-up. */
    Result run(Scenario scenario, Progress progress) {
        return run(scenario, progress, true);
    }

    /**
     * Runs every policy of {@code scenario}, in order, until done or stopped.
     *
     * @param warmUp first run every policy for one frame at a sixteenth of the size and discard the numbers, so that
     *               the first policy's times are not those of a cold JIT
     */
    Result run(Scenario scenario, Progress progress, boolean warmUp) {
        if (warmUp) {
            Scenario small = scenario.resized(1, 0.25);
            for (ChunkPolicy p : scenario.policies()) {
                if (!stop.get()) {
                    new PolicyRun(small, p, null, new long[1], 0).run();
                }
            }
        }
        List<PolicyResult> results = new ArrayList<>();
        long total = (long) scenario.policies().size() * scenario.frames() * scenario.workload().size();
        long[] done = {0};
        for (ChunkPolicy p : scenario.policies()) {
            if (stop.get()) {
                break;
            }
            results.add(new PolicyRun(scenario, p, progress, done, total).run());
        }
        // interrupted only if a policy was cut short or skipped, not by a stop after the last one
        boolean interrupted = results.size() < scenario.policies().size() || !results.getLast().complete();
        return new Result(scenario, List.copyOf(results), interrupted);
    }

    /** One buffer instance: its memory and its reservation in each VCM. */
    private static final class Instance {
        final Scenario.BufferSpec spec;
        final int index;
        final PhysMem memory;
        final Map<String, Reservation> byVcm = new LinkedHashMap<>();
        /** What the last writer wrote: 0 nothing yet, -1 unknown (a partial write), else the write's id. */
        long generation;

        Instance(Scenario.BufferSpec spec, int index, PhysMem memory) {
            this.spec = spec;
            this.index = index;
            this.memory = memory;
        }
    }

    private final class PolicyRun {
        private final Scenario scenario;
        private final ChunkPolicy policy;
        private final Progress progress;
        private final long[] done;
        private final long total;
        private final Map<String, List<Instance>> buffers = new LinkedHashMap<>();
        private final Map<String, Vcm> vcms = new HashMap<>();
        private final Map<String, String> vcmOfDevice = new HashMap<>();
        private final Map<String, long[]> nanosByDevice = new HashMap<>();
        private final List<Transfer> transfers = new ArrayList<>();
        private long mapNanos;
        private long unmapNanos;
        private long verified;
        private long mismatches;
        private String firstMismatch;

        PolicyRun(Scenario scenario, ChunkPolicy policy, Progress progress, long[] done, long total) {
            this.scenario = scenario;
            this.policy = policy;
            this.progress = progress;
            this.done = done;
            this.total = total;
        }

        PolicyResult run() {
            Vcmm.Builder b = Vcmm.builder();
            for (Scenario.MemorySpec m : scenario.memoryTypes()) {
                // thread caches off: every allocation and free goes to the shared pool, so runs are repeatable
                b.memoryType(MemoryType.builder(m.name()).base(m.base()).size(m.size()).secure(m.secure()).threadCacheCapacity(0)
                    .zeroOnHandoff(m.zeroOnHandoff()));
            }
            b.pageTableMemory(scenario.pageTableMemory());
            List<PhysMem> fragments = new ArrayList<>();
            try (Vcmm vcmm = b.build()) {
                for (Scenario.MemorySpec m : scenario.memoryTypes()) {
                    fragment(vcmm.memoryType(m.name()), m.fragment(), fragments);
                }
                build(vcmm);
                long pteWrites = 0;
                long tableBytes = 0;
                for (Vcm v : vcms.values()) {
                    for (PageTableFormat f : v.formats()) {
                        PageTableView t = v.table(f);
                        tableBytes += t.tableBytes();
                        for (Reservation r : v.reservations()) {
                            pteWrites += leafEntries(t, r);
                        }
                    }
                }
                long chunks = buffers.values().stream().flatMap(List::stream).mapToLong(i -> i.memory.chunkCount()).sum();
                String dot = GraphExport.toDot(vcmm);
                for (Scenario.VcmSpec spec : scenario.vcms()) { // name the VCMs as the scenario does
                    String own = vcms.get(spec.name()).name();
                    dot = dot.replace("label=\"" + own + " ", "label=\"" + spec.name() + " (" + own + ") ");
                }
                int frames = 0;
                for (int frame = 0; frame < scenario.frames() && !stop.get(); frame++) {
                    if (runFrame(vcmm, frame)) {
                        frames++;
                    }
                }
                List<DeviceResult> devices = new ArrayList<>();
                long iotlbBytes = 0;
                for (Scenario.DeviceSpec d : scenario.devices()) {
                    DeviceStats s = vcmm.device(d.name()).stats();
                    long bytes = s.bytesRead() + s.bytesWritten();
                    if (d.kind() != DeviceKind.ONE_TO_ONE) {
                        iotlbBytes += bytes;
                    }
                    devices.add(new DeviceResult(d.name(), d.kind(), d.format() == null ? "one-to-one" : d.format().name(),
                        d.kind() == DeviceKind.ONE_TO_ONE ? 0 : d.iotlbEntries(), d.kind() == DeviceKind.ONE_TO_ONE ? 0 : d.iotlbWays(),
                        bytes, s.iotlb().hits(), s.iotlb().misses(), s.faults(),
                        nanosByDevice.getOrDefault(d.name(), new long[1])[0]));
                }
                teardown();
                fragments.forEach(PhysMem::free);
                return new PolicyResult(policy, frames, frames == scenario.frames(), pteWrites, tableBytes, chunks, mapNanos,
                    unmapNanos, iotlbBytes, verified, mismatches, firstMismatch, List.copyOf(devices), List.copyOf(transfers), dot);
            }
        }

        /** Takes {@code bytes} as 4K pages and gives every other one back, so that 4K allocations scatter. */
        private void fragment(MemoryType m, long bytes, List<PhysMem> held) {
            List<PhysMem> pages = new ArrayList<>();
            for (long i = 0; i < bytes / PAGE; i++) {
                pages.add(m.physAlloc(PAGE, ChunkPolicy.PAGES_4K));
            }
            for (int i = 0; i < pages.size(); i++) {
                if (i % 2 == 0) {
                    pages.get(i).free();
                } else {
                    held.add(pages.get(i));
                }
            }
        }

        private void build(Vcmm vcmm) {
            for (Scenario.DeviceSpec d : scenario.devices()) {
                DeviceOptions o = d.kind() == DeviceKind.ONE_TO_ONE ? DeviceOptions.DEFAULT : DeviceOptions.iotlb(d.iotlbEntries(), d.iotlbWays());
                vcmm.device(d.name(), d.kind(), d.format(), d.secure(), o);
            }
            for (Scenario.VcmSpec s : scenario.vcms()) {
                Vcm v;
                if (s.cpu()) {
                    v = vcmm.createCpuVcm(vcmm.device(s.devices().getFirst()), s.start(), s.size());
                } else {
                    v = s.kind() == Vcm.Kind.ONE_TO_ONE ? vcmm.createOneToOneVcm(s.start(), s.size()) : vcmm.createVcm(s.start(), s.size());
                    for (String d : s.devices()) {
                        vcmm.assoc(v, vcmm.device(d)).activate();
                    }
                }
                vcms.put(s.name(), v);
                s.devices().forEach(d -> vcmOfDevice.put(d, s.name()));
            }
            for (Scenario.BufferSpec s : scenario.buffers()) {
                ChunkPolicy p = s.policy() != null ? s.policy() : policy;
                List<Instance> list = new ArrayList<>();
                for (int i = 0; i < s.count(); i++) {
                    PhysMem pm = vcmm.physAlloc(vcmm.memoryType(s.memoryType()), s.size(), p,
                        s.contiguous() ? PhysAllocOptions.CONTIGUOUS : PhysAllocOptions.DEFAULT);
                    Instance inst = new Instance(s, i, pm);
                    list.add(inst);
                    for (String name : s.vcms()) {
                        Vcm v = vcms.get(name);
                        Reservation r = v.kind() == Vcm.Kind.ONE_TO_ONE
                            ? v.reserveAt(pm.physicalAddress(0), pm.length(), ReservationAttributes.RW)
                            : v.reserve(pm.length(), ReservationAttributes.RW, alignment(pm));
                        long t0 = System.nanoTime();
                        r.back(pm);
                        mapNanos += System.nanoTime() - t0;
                        inst.byVcm.put(name, r);
                    }
                }
                buffers.put(s.name(), list);
            }
        }

        /**
         * @return a virtual alignment that lets the mapper use the largest leaves the memory allows: the natural
         * alignment of its first physical byte (the largest chunk comes first), at most its length and 1G
         */
        private static long alignment(PhysMem pm) {
            long pa = pm.physicalAddress(0);
            long a = pa == 0 ? 1L << 30 : Long.lowestOneBit(pa);
            return Math.max(PAGE, Math.min(Math.min(a, Long.highestOneBit(pm.length())), 1L << 30));
        }

        private void teardown() {
            for (List<Instance> list : buffers.values()) {
                for (Instance inst : list) {
                    for (Reservation r : inst.byVcm.values()) {
                        long t0 = System.nanoTime();
                        r.unback();
                        unmapNanos += System.nanoTime() - t0;
                        r.unreserve();
                    }
                    inst.memory.free();
                }
            }
        }

        /** @return whether the frame ran to its end */
        private boolean runFrame(Vcmm vcmm, int frame) {
            List<Scenario.StepSpec> steps = scenario.workload();
            for (int i = 0; i < steps.size(); i++) {
                if (!runStep(vcmm, frame, i, steps.get(i))) {
                    return false;
                }
                done[0]++;
                if (progress != null) {
                    progress.step(policy, done[0], total, frame);
                }
            }
            return true;
        }

        /** @return whether the step ran to its end */
        private boolean runStep(Vcmm vcmm, int frame, int stepIndex, Scenario.StepSpec step) {
            List<Instance> list = buffers.get(step.buffer());
            Instance inst = list.get(frame % list.size());
            Device device = vcmm.device(step.device());
            long base = inst.byVcm.get(vcmOfDevice.get(step.device())).address();
            long size = inst.spec.size();
            boolean write = step.access() == Access.WRITE;
            long generation = write ? (step.pattern() == Scenario.Pattern.RANDOM ? -1 : (long) frame * scenario.workload().size() + stepIndex + 1)
                : inst.generation;
            byte[] data = new byte[step.burst()];
            byte[] expected = write ? null : new byte[step.burst()];
            CRC32 crc = step.pattern() == Scenario.Pattern.STREAMING ? new CRC32() : null;
            long[] nanos = nanosByDevice.computeIfAbsent(step.device(), k -> new long[1]);
            long moved = 0;
            Offsets offsets = new Offsets(step, size, new SplittableRandom(scenario.seed() * 1_000_003L + frame * 1009L + stepIndex));
            boolean finished = true;
            for (long off = offsets.next(); off >= 0; off = offsets.next()) {
                if (stop.get()) {
                    finished = false;
                    break;
                }
                int len = offsets.length();
                if (write) {
                    fill(data, len, generation, off);
                    long t0 = System.nanoTime();
                    device.write(base + off, data, 0, len);
                    nanos[0] += System.nanoTime() - t0;
                } else {
                    long t0 = System.nanoTime();
                    device.read(base + off, data, 0, len);
                    nanos[0] += System.nanoTime() - t0;
                    if (generation > 0) {
                        fill(expected, len, generation, off);
                        verified += len;
                        if (!Arrays.equals(data, 0, len, expected, 0, len)) {
                            mismatches++;
                            if (firstMismatch == null) {
                                int at = Arrays.mismatch(data, 0, len, expected, 0, len);
                                firstMismatch = String.format("frame %d, step %d: %s read %s#%d at offset 0x%x: got 0x%02x, its producer wrote 0x%02x",
                                    frame, stepIndex, step.device(), step.buffer(), inst.index, off + at, data[at], expected[at]);
                            }
                        }
                    }
                }
                if (crc != null) {
                    crc.update(data, 0, len);
                }
                moved += len;
            }
            if (write && finished) {
                inst.generation = generation;
            } else if (write) {
                inst.generation = -1; // partly overwritten: no longer checkable
            }
            transfers.add(new Transfer(frame, stepIndex, step.device(), step.access(), step.buffer(), inst.index, moved,
                crc != null && finished ? crc.getValue() : -1));
            return finished;
        }
    }

    /** The offsets of a step's bursts, in the pattern's order; -1 at the end. */
    private static final class Offsets {
        private final Scenario.StepSpec step;
        private final long size;
        private final SplittableRandom random;
        private long i;
        private long column;
        private long row;
        private int length;

        Offsets(Scenario.StepSpec step, long size, SplittableRandom random) {
            this.step = step;
            this.size = size;
            this.random = random;
        }

        /** @return the next offset, or -1; {@link #length()} is then its burst length */
        long next() {
            int burst = step.burst();
            switch (step.pattern()) {
                case STREAMING -> {
                    long off = i * burst;
                    if (off >= size) {
                        return -1;
                    }
                    i++;
                    length = (int) Math.min(burst, size - off);
                    return off;
                }
                case STRIDED -> {
                    long stride = step.stride();
                    long rows = (size + stride - 1) / stride;
                    while (true) {
                        if (row == rows) {
                            row = 0;
                            column++;
                        }
                        long x = column * burst;
                        if (x >= stride) {
                            return -1;
                        }
                        long off = row * stride + x;
                        row++;
                        if (off < size) {
                            length = (int) Math.min(Math.min(burst, stride - x), size - off);
                            return off;
                        }
                    }
                }
                case RANDOM -> {
                    if (i == step.accesses()) {
                        return -1;
                    }
                    i++;
                    long slots = Math.max(1, size / burst);
                    long off = random.nextLong(slots) * burst;
                    length = (int) Math.min(burst, size - off);
                    return off;
                }
                default -> throw new AssertionError(step.pattern());
            }
        }

        int length() {
            return length;
        }
    }

    /**
     * Fills {@code b[0, len)} with the bytes write {@code generation} puts at buffer offsets {@code [off, off + len)}:
     * a hash of the write and the 4K page, varied per byte, so a byte read from the wrong page, frame or buffer shows.
     */
    static void fill(byte[] b, int len, long generation, long off) {
        long page = -1;
        long h = 0;
        for (int i = 0; i < len; i++) {
            long o = off + i;
            long p = o >>> 12;
            if (p != page) {
                page = p;
                h = mix(generation * 0x9E3779B97F4A7C15L + p);
            }
            b[i] = (byte) ((h >>> ((o & 7) << 3)) ^ (o >>> 3));
        }
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** @return the leaf entries of {@code table} that map {@code r}, walking it leaf by leaf as the hardware would */
    static long leafEntries(PageTableView table, Reservation r) {
        PageTableFormat f = table.format();
        long count = 0;
        long va = r.address();
        long end = va + r.length();
        while (Long.compareUnsigned(va, end) < 0) {
            WalkResult w = table.translate(va);
            if (w instanceof WalkResult.Translation t) {
                count += entriesOf(f, t.leafSize(), t.level());
                va = (va & -t.leafSize()) + t.leafSize();
            } else {
                va += PAGE;
            }
        }
        return count;
    }

    private static int entriesOf(PageTableFormat f, long size, int level) {
        for (LeafSize l : f.leafSizes()) {
            if (l.size() == size && l.level() == level) {
                return l.entries();
            }
        }
        return 1;
    }
}
