package dev.vcmm.cli;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceFaultException;
import dev.vcmm.DeviceStats;
import dev.vcmm.MemoryType;
import dev.vcmm.PageRequests;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.LeafSize;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Runs a {@link DemandPagingScenario}: demand paging through page requests (PCIe ATS/PRI, {@code PageRequests}).
 *
 * <pre>
 * build     the memory types, one VCM over the buffer, one IOMMU device associated with it; the buffer reserved as
 *           size / pageSize reservations, none backed
 * serve     PageRequests.start(device, queue, server): the handler thread, for each request, allocates pageSize bytes,
 *           fills them with bytes derived from (seed, page index), backs the page's reservation and says yes
 * walk      the device's DMA threads read the buffer (thread t the pages t, t + threads, ...) in readBytes reads; the
 *           first read of a page faults, posts a request, waits for the answer and walks again; every byte read is
 *           compared with what the handler put there
 * report    requests, granted, refused, queue full, latency from posting to answer (mean, max), device faults,
 *           retries and failed accesses, pages backed, bytes read and compared
 * </pre>
 *
 * <p><b>Thread-safety:</b> {@link #run} is called from one thread; it starts the DMA threads and joins them, and closes
 * the page requests (which stops the handler thread) before it returns.
 */
final class DemandPagingRunner {

    /**
     * The outcome.
     *
     * @param requests   page requests posted
     * @param granted    requests the handler granted
     * @param refused    requests refused (none expected)
     * @param queueFull  faults that found the queue full
     * @param meanLatencyNanos the mean time from posting to answer
     * @param maxLatencyNanos  the longest
     * @param faults     translation faults the device took
     * @param failed     accesses that failed
     * @param pagesBacked pages the handler backed
     * @param bytesRead  bytes the device read
     * @param mismatchedBytes bytes read that differ from what the handler wrote
     */
    record Result(long requests, long granted, long refused, long queueFull, double meanLatencyNanos, long maxLatencyNanos,
                  long faults, long failed, long pagesBacked, long bytesRead, long mismatchedBytes) {
    }

    private DemandPagingRunner() {
    }

    /** {@return the bytes the handler puts in page {@code index}: a function of the seed and the index only} */
    static byte[] pageBytes(long seed, long index, int pageSize) {
        byte[] b = new byte[pageSize];
        new SplittableRandom(seed * 0x9E3779B97F4A7C15L + index).nextBytes(b);
        return b;
    }

    /**
     * Runs the scenario and prints the report.
     *
     * @return the result; {@link Result#mismatchedBytes()} and {@link Result#failed()} are 0 when every read saw the
     *         handler's bytes
     */
    static Result run(DemandPagingScenario s, PrintStream out) {
        Vcmm.Builder b = Vcmm.builder();
        for (Scenario.MemorySpec m : s.memoryTypes()) {
            b.memoryType(MemoryType.builder(m.name()).base(m.base()).size(m.size()));
        }
        b.pageTableMemory(s.pageTableMemory());
        try (Vcmm vcmm = b.build()) {
            Vcm vcm = vcmm.createVcm(s.address(), s.bufferSize());
            Device device = vcmm.device("dev", s.format());
            vcmm.assoc(vcm, device).activate();
            int pageSize = (int) s.pageSize();
            long pages = s.bufferSize() / pageSize;
            for (long i = 0; i < pages; i++) {
                vcm.reserveAt(s.address() + i * pageSize, pageSize, ReservationAttributes.RW);
            }
            out.printf("%s: %s%n", s.name(), s.description());
            out.printf("buffer %s at 0x%x, none of it backed: %d pages of %s, each backed from %s on its first page request%n",
                LeafSize.humanSize(s.bufferSize()), s.address(), pages, LeafSize.humanSize(pageSize), s.memoryType());
            out.printf("device %s (%s), %d DMA threads reading %d B at a time; page-request queue of %d%n%n", device.name(),
                s.format().name(), s.threads(), s.readBytes(), s.queue());
            out.flush();

            AtomicLong backed = new AtomicLong();
            PageRequests.Server server = request -> {
                Reservation r = vcm.reservationAt(request.address());
                if (r == null) {
                    return false;
                }
                if (!r.isBacked()) {
                    long index = (r.address() - s.address()) / pageSize;
                    PhysMem pm = vcmm.physAlloc(s.memoryType(), pageSize, ChunkPolicy.VCMM);
                    byte[] bytes = pageBytes(s.seed(), index, pageSize);
                    for (int o = 0; o < pageSize; o += 4096) {
                        pm.memoryType().memory().copyIn(bytes, o, pm.physicalAddress(o), 4096);
                    }
                    r.back(pm);
                    backed.incrementAndGet();
                }
                return true;
            };
            AtomicLong read = new AtomicLong();
            AtomicLong mismatched = new AtomicLong();
            AtomicReference<DeviceFaultException> firstFailure = new AtomicReference<>();
            long t0 = System.nanoTime();
            PageRequests.Stats stats;
            try (PageRequests pri = PageRequests.start(device, s.queue(), server)) {
                List<Thread> threads = new ArrayList<>();
                for (int t = 0; t < s.threads(); t++) {
                    int first = t;
                    threads.add(Thread.ofPlatform().name("vcmm-dma-" + t).start(() -> {
                        byte[] buf = new byte[s.readBytes()];
                        for (long i = first; i < pages; i += s.threads()) {
                            byte[] want = pageBytes(s.seed(), i, pageSize);
                            for (int o = 0; o < pageSize; o += buf.length) {
                                try {
                                    device.read(s.address() + i * pageSize + o, buf, 0, buf.length);
                                } catch (DeviceFaultException e) {
                                    firstFailure.compareAndSet(null, e);
                                    continue;
                                }
                                read.addAndGet(buf.length);
                                for (int k = 0; k < buf.length; k++) {
                                    if (buf[k] != want[o + k]) {
                                        mismatched.incrementAndGet();
                                    }
                                }
                            }
                        }
                    }));
                }
                for (Thread t : threads) {
                    t.join();
                }
                stats = pri.stats();
            }
            double ms = (System.nanoTime() - t0) / 1e6;
            DeviceStats d = device.stats();
            Result r = new Result(stats.requests(), stats.granted(), stats.refused(), stats.queueFull(),
                stats.meanLatencyNanos(), stats.maxLatencyNanos(), d.faults(), d.failed(), backed.get(), read.get(),
                mismatched.get());
            out.printf("%-16s %d (granted %d, refused %d, queue full %d)%n", "page requests", r.requests(), r.granted(),
                r.refused(), r.queueFull());
            out.printf("%-16s mean %.1f us, max %.1f us (from posting to answer)%n", "latency",
                r.meanLatencyNanos() / 1e3, r.maxLatencyNanos() / 1e3);
            out.printf("%-16s %d (retries %d, failed accesses %d)%n", "device faults", r.faults(), d.retries(), r.failed());
            out.printf("%-16s %d (%s)%n", "pages backed", r.pagesBacked(), LeafSize.humanSize(r.pagesBacked() * pageSize));
            out.printf("%-16s %d in %.1f ms%n", "bytes read", r.bytesRead(), ms);
            if (firstFailure.get() != null) {
                out.printf("first failed access: %s%n", firstFailure.get().getMessage());
            }
            boolean ok = r.mismatchedBytes() == 0 && r.failed() == 0 && r.bytesRead() == s.bufferSize();
            out.printf("bytes read == handler's: %s (%d bytes compared%s)%n", ok ? "yes" : "NO", r.bytesRead(),
                r.mismatchedBytes() == 0 ? "" : ", " + r.mismatchedBytes() + " differ");
            return r;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }
}
