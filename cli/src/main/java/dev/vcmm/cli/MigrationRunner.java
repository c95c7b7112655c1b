package dev.vcmm.cli;

import dev.vcmm.Device;
import dev.vcmm.DirtyBitmap;
import dev.vcmm.DirtyTracking;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.spi.PhysicalMemory;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Runs a {@link MigrationScenario}: the pre-copy live migration of a guest with assigned devices, as a hypervisor
 * does it with iommufd's dirty tracking.
 *
 * <pre>
 * build       the memory types, one VCM of the guest's memory (backed from the guest's memory type), one IOMMU
 *             device per writer associated with it; the guest memory filled with a pattern by the first device
 * round 0     enable dirty tracking, copy all of the guest memory to the destination memory type
 * round k     give each device writesPerRound * (1 - throttle)^(k-1) writes to make (its own thread, random bursts
 *             in its hot set, random bytes), and meanwhile readAndClear the whole guest memory and copy the dirty
 *             pages; then wait until the devices have made their writes. Stop when a round's dirty bytes are at most
 *             stopBelow, or after maxRounds
 * stop-copy   stop the devices, readAndClear once more and copy; then compare the copy with the source, byte by byte
 * </pre>
 *
 * <p><b>Thread-safety:</b> {@link #run} is called from one thread; it starts one writer thread per device and joins
 * them before it returns.
 */
final class MigrationRunner {

    /** One round: what was dirty, copied, and written meanwhile. */
    record Round(String name, int dirtyPages, long bytesCopied, long deviceWrites, double millis) {
    }

    /** The outcome. */
    record Result(List<Round> rounds, boolean converged, long bytesCompared, long mismatchedBytes) {
    }

    private MigrationRunner() {
    }

    /**
     * Runs the scenario and prints a table of the rounds and the verdict.
     *
     * @return the result; {@link Result#mismatchedBytes()} is 0 when the copy equals the source
     */
    static Result run(MigrationScenario s, PrintStream out) {
        Vcmm.Builder b = Vcmm.builder();
        for (Scenario.MemorySpec m : s.memoryTypes()) {
            b.memoryType(MemoryType.builder(m.name()).base(m.base()).size(m.size()));
        }
        b.pageTableMemory(s.pageTableMemory());
        try (Vcmm vcmm = b.build()) {
            MigrationScenario.Guest g = s.guest();
            Vcm vcm = vcmm.createVcm(g.address(), g.size());
            List<Device> devices = new ArrayList<>();
            for (MigrationScenario.Writer w : s.devices()) {
                Device d = vcmm.device(w.name(), w.format());
                vcmm.assoc(vcm, d).activate();
                devices.add(d);
            }
            PhysMem source = vcmm.physAlloc(g.memoryType(), g.size(), g.policy());
            Reservation r = vcm.reserveAt(g.address(), g.size(), ReservationAttributes.RW).back(source);
            PhysMem copy = vcmm.physAlloc(s.destination(), g.size(), g.policy());
            fill(devices.get(0), r.address(), g.size(), s.seed());

            out.printf("%s: %s%n", s.name(), s.description());
            out.printf("guest memory %s in %s at 0x%x (%s), copied to %s; devices %s%n", LeafSize.humanSize(g.size()),
                g.memoryType(), g.address(), g.policy(), s.destination(),
                String.join(", ", s.devices().stream().map(w -> w.name() + " (" + w.format().name() + ", "
                    + w.writesPerRound() + " x " + w.burst() + " B per round in " + LeafSize.humanSize(w.hotSet()) + ")").toList()));
            out.printf("throttle %.2f per round; pre-copy ends when a round's dirty bytes are <= %s, or after %d rounds%n%n",
                s.throttle(), LeafSize.humanSize(s.stopBelow()), s.maxRounds());
            out.printf("%-14s %12s %14s %14s %10s%n", "round", "dirty pages", "bytes copied", "device writes", "ms");

            DirtyTracking tracking = vcm.dirtyTracking();
            List<Round> rounds = new ArrayList<>();
            long t0 = System.nanoTime();
            tracking.enable();
            copyAll(source, copy, g.size());
            rounds.add(print(out, new Round("0 (all)", (int) (g.size() / 4096), g.size(), 0, ms(t0))));

            AtomicBoolean stop = new AtomicBoolean();
            AtomicLong[] budgets = new AtomicLong[devices.size()];
            AtomicLong written = new AtomicLong();
            List<Thread> threads = new ArrayList<>();
            for (int i = 0; i < devices.size(); i++) {
                budgets[i] = new AtomicLong();
                threads.add(writer(devices.get(i), s.devices().get(i), r.address(), budgets[i], stop, written, s.seed() + i));
            }
            threads.forEach(Thread::start);
            boolean converged = false;
            try {
                double factor = 1.0;
                for (int k = 1; k <= s.maxRounds() && !converged; k++) {
                    long before = written.get();
                    for (int i = 0; i < budgets.length; i++) {
                        budgets[i].set(Math.round(s.devices().get(i).writesPerRound() * factor));
                    }
                    long t = System.nanoTime();
                    DirtyBitmap dirty = tracking.readAndClear(r.address(), g.size()); // while the devices write
                    long bytes = copyDirty(dirty, r.address(), source, copy);
                    for (AtomicLong budget : budgets) {
                        while (budget.get() > 0) {
                            Thread.onSpinWait();
                        }
                    }
                    rounds.add(print(out, new Round(Integer.toString(k), dirty.dirtyPages(), bytes, written.get() - before, ms(t))));
                    converged = dirty.dirtyBytes() <= s.stopBelow();
                    factor *= 1 - s.throttle();
                }
            } finally {
                stop.set(true);
                for (Thread th : threads) {
                    th.join();
                }
            }
            long t = System.nanoTime();
            DirtyBitmap last = tracking.readAndClear(r.address(), g.size()); // devices stopped: the rest
            long bytes = copyDirty(last, r.address(), source, copy);
            rounds.add(print(out, new Round("stop-and-copy", last.dirtyPages(), bytes, 0, ms(t))));
            tracking.disable();

            long total = rounds.stream().mapToLong(Round::bytesCopied).sum();
            long mismatched = compare(source, copy, g.size());
            out.printf("%n%s after %d pre-copy rounds; %s copied in all (%.2fx the guest memory)%n",
                converged ? "converged" : "did not converge", rounds.size() - 2, LeafSize.humanSize(total & -4096L),
                (double) total / g.size());
            out.printf("copy == source: %s (%d bytes compared%s)%n", mismatched == 0 ? "yes" : "NO", g.size(),
                mismatched == 0 ? "" : ", " + mismatched + " differ");
            return new Result(List.copyOf(rounds), converged, g.size(), mismatched);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    private static Round print(PrintStream out, Round r) {
        out.printf("%-14s %12d %14d %14d %10.2f%n", r.name(), r.dirtyPages(), r.bytesCopied(), r.deviceWrites(), r.millis());
        out.flush();
        return r;
    }

    private static double ms(long since) {
        return (System.nanoTime() - since) / 1e6;
    }

    /** Writes a pattern over the whole guest memory through {@code d}. */
    private static void fill(Device d, long address, long size, long seed) {
        byte[] page = new byte[4096];
        Random rnd = new Random(seed);
        for (long off = 0; off < size; off += page.length) {
            rnd.nextBytes(page);
            d.write(address + off, page, 0, page.length);
        }
    }

    /** A device's writer thread: makes the writes its budget allows, random bytes at random bursts of its hot set. */
    private static Thread writer(Device d, MigrationScenario.Writer w, long address, AtomicLong budget, AtomicBoolean stop,
                                 AtomicLong written, long seed) {
        Thread t = new Thread(() -> {
            Random rnd = new Random(seed);
            byte[] data = new byte[w.burst()];
            long slots = w.hotSet() / w.burst();
            while (!stop.get()) {
                if (budget.get() <= 0) {
                    Thread.onSpinWait();
                    continue;
                }
                rnd.nextBytes(data);
                long at = address + w.hotOffset() + (long) (rnd.nextDouble() * slots) * w.burst();
                d.write(at, data, 0, data.length);
                written.incrementAndGet();
                budget.decrementAndGet(); // after the write has returned: the round waits for it
            }
        }, "vcmm-migration-" + w.name());
        t.setDaemon(true);
        return t;
    }

    private static void copyAll(PhysMem source, PhysMem copy, long size) {
        byte[] page = new byte[4096];
        for (long off = 0; off < size; off += 4096) {
            copyPage(source, copy, off, page);
        }
    }

    private static long copyDirty(DirtyBitmap dirty, long base, PhysMem source, PhysMem copy) {
        byte[] page = new byte[4096];
        long[] bytes = {0};
        dirty.forEachDirtyPage(a -> {
            for (long off = a - base; off < a - base + dirty.pageSize(); off += 4096) {
                copyPage(source, copy, off, page);
                bytes[0] += 4096;
            }
        });
        return bytes[0];
    }

    private static void copyPage(PhysMem source, PhysMem copy, long off, byte[] page) {
        source.memoryType().memory().copyOut(source.physicalAddress(off), page, 0, page.length);
        copy.memoryType().memory().copyIn(page, 0, copy.physicalAddress(off), page.length);
    }

    /** {@return the bytes of {@code copy} that differ from {@code source}} */
    private static long compare(PhysMem source, PhysMem copy, long size) {
        PhysicalMemory sm = source.memoryType().memory();
        PhysicalMemory cm = copy.memoryType().memory();
        byte[] a = new byte[4096];
        byte[] c = new byte[4096];
        long differ = 0;
        for (long off = 0; off < size; off += 4096) {
            sm.copyOut(source.physicalAddress(off), a, 0, a.length);
            cm.copyOut(copy.physicalAddress(off), c, 0, c.length);
            if (!Arrays.equals(a, c)) {
                for (int i = 0; i < a.length; i++) {
                    differ += a[i] != c[i] ? 1 : 0;
                }
            }
        }
        return differ;
    }
}
