package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;

import java.util.Objects;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Page requests (PCIe ATS/PRI, as shared virtual addressing uses them): a device that misses a translation posts a
 * request to a bounded queue, a handler thread of its own serves it (backs the page, or refuses), and the device's
 * DMA waits for the answer, then walks again. It is the asynchronous alternative to a synchronous {@link FaultHandler}
 * (which runs in the DMA's own thread): the DMA thread only queues and waits; the server runs in the handler thread.
 *
 * <pre>{@code
 * try (PageRequests pri = PageRequests.start(gpu, 64, request -> {
 *     Reservation r = vcm.reservationAt(request.address());
 *     if (r == null) {
 *         return false;                       // refused: the DMA fails with "page request refused"
 *     }
 *     r.back(vcmm.physAlloc("ddr", r.length(), ChunkPolicy.VCMM));
 *     return true;                            // granted: the DMA walks again
 * })) {
 *     gpu.read(address, buffer, 0, buffer.length);
 * }
 * }</pre>
 *
 * A translation fault ({@link FaultReason#TRANSLATION}) posts a request; any other fault (permission, secure, address
 * size) terminates the access as without a handler. The access fails with a {@link DeviceFaultException} whose message
 * gives the reason when the queue is full ({@code "page request queue full"}), when the server refuses or throws
 * ({@code "page request refused"}), or when the requests are closed ({@code "page requests closed"}). A granted request
 * makes the device walk again; the device's retry bound ({@code 8} per burst) still applies.
 *
 * <p><b>Thread-safety:</b> thread-safe. Any number of DMA threads of the device may post at once (the queue is an
 * {@link ArrayBlockingQueue}); one handler thread serves the requests in order, with no lock of the graph held, so the
 * server may back, unback and remap. A DMA thread waits for its answer outside any burst (the device leaves its burst
 * fence before it asks a handler), so an unback that races with a request does not wait for it. {@link #close()}
 * refuses what is queued, stops the thread and unhooks the device.
 */
public final class PageRequests implements FaultHandler, AutoCloseable {

    /**
     * What the handler thread calls for each request.
     *
     * <p><b>Thread-safety:</b> called in the handler thread only, one request at a time.
     */
    @FunctionalInterface
    public interface Server {
        /**
         * {@return {@code true} if the page is mapped now (the device walks again), {@code false} to refuse}
         *
         * @param request the request
         */
        boolean serve(PageRequest request);
    }

    /**
     * A page request: the device, the address that missed and the access.
     *
     * <p><b>Thread-safety:</b> immutable.
     *
     * @param device  the device that missed
     * @param address the device address
     * @param access  the access that missed
     */
    public record PageRequest(Device device, long address, Access access) {
    }

    /**
     * A snapshot of the counters.
     *
     * <p><b>Thread-safety:</b> immutable.
     *
     * @param requests       requests posted to the queue
     * @param granted        requests the server granted
     * @param refused        requests the server refused (or that failed, or were pending at close)
     * @param queueFull      translation faults refused because the queue was full (not posted)
     * @param latencyNanos   total time from posting to answer, of every answered request
     * @param maxLatencyNanos the longest of those times
     */
    public record Stats(long requests, long granted, long refused, long queueFull, long latencyNanos, long maxLatencyNanos) {

        /** {@return the mean time from posting to answer in nanoseconds, 0 without answers} */
        public double meanLatencyNanos() {
            long answered = granted + refused;
            return answered == 0 ? 0 : (double) latencyNanos / answered;
        }
    }

    /** One posted request and its answer. */
    private record Pending(PageRequest request, long posted, CompletableFuture<Boolean> answer) {
    }

    private final Device device;
    private final int capacity;
    private final Server server;
    private final ArrayBlockingQueue<Pending> queue;
    private final Thread thread;
    private final AtomicLong requests = new AtomicLong();
    private final AtomicLong granted = new AtomicLong();
    private final AtomicLong refused = new AtomicLong();
    private final AtomicLong queueFull = new AtomicLong();
    private final AtomicLong latency = new AtomicLong();
    private final AtomicLong maxLatency = new AtomicLong();
    private volatile boolean closed;

    private PageRequests(Device device, int capacity, Server server) {
        this.device = device;
        this.capacity = capacity;
        this.server = server;
        this.queue = new ArrayBlockingQueue<>(capacity);
        this.thread = Thread.ofPlatform().daemon().name("vcmm-pri-" + device.name()).unstarted(this::serveLoop);
    }

    /**
     * Enables page requests for {@code device}: hooks them as its fault handler (replacing any) and starts the handler
     * thread.
     *
     * @param device   the device
     * @param capacity the queue's capacity, at least 1: a translation fault that finds it full fails at once
     * @param server   what serves each request, in the handler thread
     * @return the running page requests; close them to stop
     * @throws IllegalArgumentException if {@code capacity < 1}
     */
    public static PageRequests start(Device device, int capacity, Server server) {
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(server, "server");
        if (capacity < 1) {
            throw new IllegalArgumentException("capacity=" + capacity + " must be at least 1");
        }
        PageRequests p = new PageRequests(device, capacity, server);
        p.thread.start();
        device.hook(p);
        return p;
    }

    /** {@return the device} */
    public Device device() {
        return device;
    }

    /** {@return the requests waiting in the queue now (not counting the one being served)} */
    public int queued() {
        return queue.size();
    }

    /** {@return a snapshot of the counters} */
    public Stats stats() {
        return new Stats(requests.get(), granted.get(), refused.get(), queueFull.get(), latency.get(), maxLatency.get());
    }

    /**
     * Posts a request for a translation fault and waits for its answer (called by the device, outside any burst).
     *
     * @throws DeviceFaultException if the queue is full, the request is refused, or the requests are closed
     */
    @Override
    public FaultAction onFault(DeviceFault fault) {
        if (fault.reason() != FaultReason.TRANSLATION) {
            return FaultAction.TERMINATE;
        }
        if (closed) {
            throw new DeviceFaultException(fault, "page requests closed");
        }
        Pending p = new Pending(new PageRequest(fault.device(), fault.address(), fault.access()), System.nanoTime(),
            new CompletableFuture<>());
        if (!queue.offer(p)) {
            queueFull.incrementAndGet();
            throw new DeviceFaultException(fault, "page request queue full (capacity " + capacity + ")");
        }
        requests.incrementAndGet();
        if (closed && queue.remove(p)) { // closed while posting: the handler thread may be gone
            answer(p, false);
        }
        boolean yes;
        try {
            yes = p.answer.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new DeviceFaultException(fault, "interrupted while waiting for a page request");
        } catch (ExecutionException e) {
            yes = false;
        }
        if (!yes) {
            throw new DeviceFaultException(fault, "page request refused" + (closed ? " (page requests closed)" : ""));
        }
        return FaultAction.RETRY;
    }

    private void serveLoop() {
        for (;;) {
            Pending p;
            try {
                p = queue.poll(10, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                continue; // only close() stops the loop
            }
            if (p == null) {
                if (closed) {
                    return;
                }
                continue;
            }
            if (closed) {
                answer(p, false); // close() refuses what is queued
                continue;
            }
            boolean yes;
            try {
                yes = server.serve(p.request);
            } catch (RuntimeException e) {
                yes = false; // a failing server refuses
            }
            answer(p, yes);
        }
    }

    private void answer(Pending p, boolean yes) {
        long t = System.nanoTime() - p.posted;
        latency.addAndGet(t);
        maxLatency.accumulateAndGet(t, Math::max);
        (yes ? granted : refused).incrementAndGet();
        p.answer.complete(yes);
    }

    /**
     * Stops: refuses the requests still queued, lets the handler thread finish the one it serves and end, and unhooks
     * the device if these requests are still its handler. Idempotent.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.unhook(this);
        try {
            thread.join(); // it refuses what is queued, then ends on an empty queue
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Pending p; (p = queue.poll()) != null; ) {
            answer(p, false); // posted while the thread was ending
        }
    }

    @Override
    public String toString() {
        return "PageRequests{" + device.name() + ", capacity " + capacity + ", " + stats() + '}';
    }
}
