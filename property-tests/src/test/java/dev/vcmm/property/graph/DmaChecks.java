package dev.vcmm.property.graph;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.DeviceFault;
import dev.vcmm.DeviceFaultException;
import dev.vcmm.DeviceStats;
import dev.vcmm.FaultAction;
import dev.vcmm.FaultHandler;
import dev.vcmm.PhysMem;
import dev.vcmm.VcmmOutOfMemoryException;
import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.property.graph.DeviceOps.Handler;
import dev.vcmm.property.graph.GraphModel.MAssoc;
import dev.vcmm.property.graph.GraphModel.MCounters;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.Prediction;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static dev.vcmm.property.graph.GraphModel.canMap;
import static dev.vcmm.property.graph.GraphShape.PAGE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DMA through a device, checked against the model: the bytes moved, the fault, the fault handler's calls and the
 * device's counters; and, after every step, a few reads through every device, a probe of every address whose mapping
 * just went (which a stale IOTLB entry must not grant), and every device's counters and crashed state.
 */
final class DmaChecks {

    private final GraphRun w;
    private final GraphModel model;

    DmaChecks(GraphRun w) {
        this.w = w;
        this.model = w.model;
    }

    /**
     * Runs one DMA and checks it against the model: the bytes moved (a read returns the model's bytes and leaves the
     * buffer untouched from the fault on; a write lands in the model's pages and nowhere else in them), the fault
     * (address, access, reason; why it was not retried), the handler's calls, and the device's counters.
     *
     * @param armed whether the device's handler acts as its kind says; disarmed (the checks' own DMA) it terminates
     */
    void dma(Device d, long address, int length, boolean write, boolean armed) {
        dma(d, 0, address, length, write, armed);
    }

    /** As {@link #dma(Device, long, int, boolean, boolean)}, through the association programmed for {@code pasid}. */
    void dma(Device d, int pasid, long address, int length, boolean write, boolean armed) {
        Access access = write ? Access.WRITE : Access.READ;
        MCounters c = model.counters.get(d);
        ModelHandler h = w.handlers.get(d);
        boolean down = model.crashed.contains(d);
        Prediction before = model.predict(d, pasid, address, length, access);
        byte[] buffer = new byte[length];
        w.rnd.nextBytes(buffer);
        byte[] original = buffer.clone();
        if (h != null) {
            h.begin(armed);
        }
        RuntimeException thrown = null;
        try {
            if (pasid != 0) {
                if (write) {
                    d.write(pasid, address, buffer, 0, length);
                } else {
                    d.read(pasid, address, buffer, 0, length);
                }
            } else if (write) {
                d.write(address, buffer, 0, length);
            } else {
                d.read(address, buffer, 0, length);
            }
        } catch (DeviceFaultException | IllegalStateException e) {
            thrown = e;
        }
        RuntimeException t = thrown;
        String what = String.format("%s%s %s 0x%x+%d", d.name(), pasid != 0 ? " pasid " + pasid : "", access, address, length);
        if (down) {
            IllegalStateException e = assertInstanceOf(IllegalStateException.class, t, () -> "DMA through crashed " + what + w.where());
            assertTrue(e.getMessage().contains("crashed"), () -> e + w.where());
            assertArrayEquals(original, buffer, () -> "crashed " + what + " moved bytes" + w.where());
            w.count("dma: crashed");
            return;
        }
        Prediction p = h != null && armed && h.kind == Handler.DEMAND ? model.predict(d, pasid, address, length, access) : before;
        if (p.reason() != null && !(h != null && h.crashedIt)) {
            assertInstanceOf(DeviceFaultException.class, t,
                () -> String.format("%s should fault (%s at 0x%x), got %s%s", what, p.reason(), p.faultAddress(), t, w.where()));
        }
        for (long[] piece : p.pieces()) {
            int pos = (int) piece[0];
            long pa = piece[1];
            int n = (int) piece[2];
            if (write) {
                model.modelWrite(pa, buffer, pos, n); // the pages are checked once all pieces are in: two may alias one page
            } else {
                byte[] expected = model.modelRead(pa, n);
                int at = Arrays.mismatch(expected, 0, n, buffer, pos, pos + n);
                assertEquals(-1, at, () -> String.format("%s read 0x%02x at 0x%x (pa=0x%x), the model says 0x%02x%s", what,
                    buffer[pos + at], address + pos + at, pa + at, expected[at], w.where()));
            }
        }
        if (write) {
            for (long[] piece : p.pieces()) {
                w.checks.checkPhysical(piece[1] & -PAGE, (int) PAGE);
            }
            c.bytesWritten += p.done();
        } else {
            assertEquals(-1, Arrays.mismatch(original, p.done(), length, buffer, p.done(), length),
                () -> what + " changed the buffer at or after the fault at +" + p.done() + w.where());
            c.bytesRead += p.done();
        }
        if (h != null) {
            c.faults += h.calls;
            c.retries += h.retries;
        }
        if (p.reason() == null) {
            assertTrue(t == null, () -> what + " should succeed, got " + t + w.where());
            w.count("dma: " + access + " ok");
        } else if (h != null && h.crashedIt) {
            IllegalStateException e = assertInstanceOf(IllegalStateException.class, t,
                () -> what + ": the handler crashed the device, got " + t + w.where());
            assertTrue(e.getMessage().contains("crashed"), () -> e + w.where());
            assertEquals(1, h.calls, w.where());
            w.count("dma: crashed by the handler");
        } else {
            DeviceFaultException e = assertInstanceOf(DeviceFaultException.class, t,
                () -> String.format("%s should fault (%s at 0x%x), got %s%s", what, p.reason(), p.faultAddress(), t, w.where()));
            DeviceFault f = e.fault();
            assertSame(d, f.device(), w.where());
            assertEquals(access, f.access(), w.where());
            assertEquals(p.faultAddress(), f.address(), () -> what + ": " + f + w.where());
            assertEquals(p.reason(), f.reason(), () -> what + ": " + f + w.where());
            boolean exhausted = h != null && armed && h.kind == Handler.RETRY;
            String why = h == null ? "no fault handler" : exhausted ? "still faulting after" : "terminated by the fault handler";
            assertTrue(e.getMessage().contains(why), () -> e.getMessage() + " should say " + why + w.where());
            if (h != null) {
                DeviceFault last = h.seen.getLast();
                assertEquals(f.address(), last.address(), w.where());
                assertEquals(f.reason(), last.reason(), w.where());
            }
            c.failed++;
            if (h == null || exhausted) {
                c.faults++;
            }
            w.count("dma: " + access + " " + p.reason() + (h == null ? "" : " " + (armed ? h.kind : "disarmed")));
        }
        if (h != null) {
            int faulted = p.reason() == null ? 0 : 1;
            int expected = !armed ? faulted : switch (h.kind) {
                case RETRY -> faulted * 8;
                case DEMAND -> h.retries + faulted;
                default -> faulted;
            };
            assertEquals(expected, h.calls, () -> what + ": handler " + h.kind + " calls " + h.seen + w.where());
        }
    }

    /** Reads through every device, probes what was just unmapped, and compares counters and crashed state. */
    void checkDevices() {
        for (Device d : w.devices) {
            List<MRes> reach = model.reachable(d).stream().filter(r -> r.pm != null).toList();
            for (int i = Math.min(2, reach.size()); i > 0; i--) {
                MRes r = reach.get(w.rnd.nextInt(reach.size()));
                long at = r.address + w.rnd.nextLong(r.length);
                dma(d, at, (int) Math.min(1 + w.rnd.nextInt(64), r.address + r.length - at), false, false);
            }
            if (model.crashed.contains(d) && !reach.isEmpty()) {
                dma(d, reach.getFirst().address, 8, false, false);
            }
            for (long a : w.recentlyUnmapped) {
                dma(d, a, 1, false, false);  // a stale IOTLB entry must not grant it
            }
            for (Map.Entry<Integer, MAssoc> e : model.pasids.get(d).entrySet()) { // each PASID programmed: a read, the probes
                List<MRes> mapped = e.getValue().vcm.res.values().stream().filter(r -> r.pm != null).toList();
                if (!mapped.isEmpty()) {
                    MRes r = mapped.get(w.rnd.nextInt(mapped.size()));
                    long at = r.address + w.rnd.nextLong(r.length);
                    dma(d, e.getKey(), at, (int) Math.min(1 + w.rnd.nextInt(64), r.address + r.length - at), false, false);
                }
                for (long a : w.recentlyUnmapped) {
                    dma(d, e.getKey(), a, 1, false, false);
                }
            }
        }
        w.recentlyUnmapped.clear();
        for (int i = Math.min(4, model.writtenPages.size()); i > 0; i--) {
            w.checks.checkPhysical(model.writtenPages.get(w.rnd.nextInt(model.writtenPages.size())), (int) PAGE);
        }
        for (Device d : w.devices) {
            DeviceStats s = d.stats();
            MCounters c = model.counters.get(d);
            String who = d.name() + " " + s;
            assertEquals(model.crashed.contains(d), d.isCrashed(), () -> who + w.where());
            assertEquals(model.crashed.contains(d), s.crashed(), () -> who + w.where());
            assertEquals(c.crashes, s.crashes(), () -> "crashes of " + who + w.where());
            assertEquals(c.faults, s.faults(), () -> "faults of " + who + w.where());
            assertEquals(c.retries, s.retries(), () -> "retries of " + who + w.where());
            assertEquals(c.failed, s.failed(), () -> "failed of " + who + w.where());
            assertEquals(c.bytesRead, s.bytesRead(), () -> "bytes read by " + who + w.where());
            assertEquals(c.bytesWritten, s.bytesWritten(), () -> "bytes written by " + who + w.where());
        }
    }

    /** The handlers the sequences hook; armed only for the DMA of a {@link DeviceOps.Dma}, terminating for the checks' own. */
    final class ModelHandler implements FaultHandler {
        final Device device;
        final Handler kind;
        boolean armed;
        int calls;
        int retries;
        boolean crashedIt;
        final List<DeviceFault> seen = new ArrayList<>();

        ModelHandler(Device device, Handler kind) {
            this.device = device;
            this.kind = kind;
        }

        void begin(boolean armed) {
            this.armed = armed;
            calls = 0;
            retries = 0;
            crashedIt = false;
            seen.clear();
        }

        @Override
        public FaultAction onFault(DeviceFault f) {
            calls++;
            seen.add(f);
            assertSame(device, f.device(), w.where());
            if (!armed) {
                return FaultAction.TERMINATE;
            }
            switch (kind) {
                case RETRY -> {
                    retries++;
                    return FaultAction.RETRY;
                }
                case CRASH -> {
                    device.crash();
                    w.crashed(device);
                    crashedIt = true;
                    retries++;
                    return FaultAction.RETRY;
                }
                case DEMAND -> {
                    if (demandBack(f)) {
                        retries++;
                        return FaultAction.RETRY;
                    }
                    return FaultAction.TERMINATE;
                }
                default -> {
                    return FaultAction.TERMINATE;
                }
            }
        }

        /** Backs the unbacked reservation a translation fault hit with new memory (in the model too). */
        boolean demandBack(DeviceFault f) {
            if (f.reason() != FaultReason.TRANSLATION) {
                return false;
            }
            MAssoc as = model.slotOf(device, f.address());
            MRes r = as == null ? null : as.vcm.at(f.address());
            if (r == null || r.pm != null || r.vcm.oneToOne || r.vcm.formats().stream().anyMatch(x -> !canMap(x, r))) {
                w.count("dma: demand refused " + (r == null ? "no reservation" : r.pm != null ? "backed" : r.vcm.oneToOne ? "one-to-one" : "unmappable"));
                return false;
            }
            String type = r.attributes.secure() && ((f.address() >>> 12) & 1) == 1 ? "secure" : "ddr";
            PhysMem pm;
            try {
                pm = w.vcmm.physAlloc(type, r.length, ChunkPolicy.VCMM);
            } catch (VcmmOutOfMemoryException | IllegalArgumentException e) {
                w.trace.add("  handler: no memory for " + r.r + ": " + e.getClass().getSimpleName());
                return false;
            }
            w.handedOff(pm);
            MPm m = new MPm(pm);
            model.pms.add(m);
            r.r.back(pm, 0);
            model.mappedInModel(r, m, 0);
            w.trace.add("  handler backs " + r.r + " with " + pm);
            w.count("dma: demand-backed");
            return true;
        }
    }
}
