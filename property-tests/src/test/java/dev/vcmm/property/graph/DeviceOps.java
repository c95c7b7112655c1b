package dev.vcmm.property.graph;

import dev.vcmm.Association;
import dev.vcmm.AssociationMode;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.Client;
import dev.vcmm.Device;
import dev.vcmm.DeviceKind;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.VcmmOutOfMemoryException;
import dev.vcmm.property.graph.GraphModel.MAssoc;
import dev.vcmm.property.graph.GraphModel.MClient;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;
import org.quicktheories.core.Gen;

import java.util.List;
import java.util.Map;

import static dev.vcmm.property.graph.GraphModel.canExpress;
import static dev.vcmm.property.graph.GraphModel.canMap;
import static dev.vcmm.property.graph.GraphShape.ATTRIBUTES;
import static dev.vcmm.property.graph.GraphShape.MIB;
import static dev.vcmm.property.graph.GraphShape.PAGE;
import static dev.vcmm.property.graph.GraphShape.REGIONS;
import static dev.vcmm.property.graph.Op.ints;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Devices at work: DMA read and write (checked by {@link DmaChecks}), fault handlers hooked, crash, reset (activating
 * again what the crash deactivated), and one-step DMA buffers. Each record is an operation, its generator is the
 * constant beside it, and {@code apply} runs it on the system and the model.
 */
final class DeviceOps {

    private DeviceOps() {
    }

    /**
     * Fault handlers the tests hook: NONE unhooks; TERMINATE; RETRY without fixing anything (the retries run out);
     * DEMAND backs the faulting unbacked reservation with new memory and retries; CRASH crashes the device and retries.
     */
    enum Handler { NONE, TERMINATE, RETRY, DEMAND, CRASH }

    /**
     * A DMA of {@code length} bytes through a device: {@code device % 5 != 0} picks among the devices with an active
     * table; {@code target % 8 != 7} picks among the reservations the device maps (else any reservation, or a region).
     */
    record Dma(int device, int target, long offset, int length, boolean write) implements Op {
        static final Gen<Op> GEN = ints(5).map(a -> new Dma(a[0], a[1], a[2] * 997L,
            a[3] % 10 == 0 ? 1 + a[3] * 7 % (64 << 10) : 1 + a[3] % (3 * (int) PAGE), a[4] % 2 == 0));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            List<Device> active = w.devices.stream().filter(x -> m.slots.get(x)[0] != null || m.slots.get(x)[1] != null).toList();
            List<Device> mapping = active.stream().filter(x -> m.reachable(x).stream().anyMatch(r -> r.pm != null)).toList();
            int kind = device() % 5;
            Device d = kind < 3 && !mapping.isEmpty() ? mapping.get(device() / 5 % mapping.size())
                : kind < 4 && !active.isEmpty() ? active.get(device() / 5 % active.size())
                : w.device(device());
            List<MRes> reach = m.reachable(d);
            List<MRes> backed = reach.stream().filter(r -> r.pm != null).toList();
            List<MRes> unbacked = reach.stream().filter(r -> r.pm == null).toList();
            DmaChecks.ModelHandler h = w.handlers.get(d);
            long address;
            if (h != null && h.kind == Handler.DEMAND && !unbacked.isEmpty() && target() % 8 < 4) {
                MRes r = unbacked.get(target() % unbacked.size());
                address = r.address + offset() % r.length;
            } else if (!backed.isEmpty() && target() % 8 < 5) {
                MRes r = backed.get(target() % backed.size());
                address = r.address + within(offset(), r.length);
            } else if (!reach.isEmpty() && target() % 8 != 7) {
                MRes r = reach.get(target() % reach.size());
                address = r.address + within(offset(), r.length);
            } else if (!m.reservations.isEmpty() && target() % 16 != 15) {
                MRes r = m.reservations.get(target() % m.reservations.size());
                address = r.address + within(offset(), r.length);
            } else {
                long[] region = REGIONS[target() % REGIONS.length];
                address = region[0] + offset() % region[1];
            }
            w.note(String.format(" -> %s at 0x%x", d.name(), address));
            w.dma.dma(d, address, length(), write(), true);
        }

        /** @return an offset in a reservation of {@code length} bytes, or (one in three) close to its end or just past it */
        static long within(long offset, long length) {
            return offset % 3 == 0 ? Math.max(0, length - offset / 3 % (2 * PAGE)) : offset % length;
        }
    }

    record Hook(int device, Handler handler) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new Hook(a[0], Handler.values()[a[1] % 8 < 3 ? Handler.DEMAND.ordinal() : a[1] % 8 - 3]));

        @Override
        public void apply(GraphRun w) {
            Device d = w.device(device());
            DmaChecks.ModelHandler mh = handler() == Handler.NONE ? null : w.dma.new ModelHandler(d, handler());
            d.hook(mh);
            w.handlers.put(d, mh);
        }
    }

    record Crash(int device) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new Crash(a[0]));

        @Override
        public void apply(GraphRun w) {
            Device d = w.device(device());
            Map<MemoryType, Long> before = w.checks.allocatedBytes();
            d.crash();
            w.crashed(d);
            assertEquals(before, w.checks.allocatedBytes(), () -> "a crash freed or allocated memory" + w.where());
        }
    }

    /** Resets a device; reactivate: activate again the associations the crash deactivated. */
    record Reset(int device, boolean reactivate) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new Reset(a[0], a[1] % 3 != 0));

        @Override
        public void apply(GraphRun w) {
            Device d = w.device(device());
            d.reset();
            List<MAssoc> wereActive = w.model.resetInModel(d);
            if (reactivate()) {
                for (MAssoc a : wereActive) {
                    if (w.model.assocs.contains(a)) {
                        w.note(", activates " + a.a);
                        w.activate(a);
                    }
                }
            }
            // the memory is as the crash left it: every readable reservation the device maps reads as the model says
            for (MRes x : w.model.reachable(d)) {
                if (x.pm != null) {
                    long at = x.address + (w.rnd.nextLong(x.length) & -8);
                    w.dma.dma(d, at, (int) Math.min(64, x.address + x.length - at), false, false);
                }
            }
        }
    }

    /**
     * A backed reservation in the device's active VCM (or a new, active one), through a client if owner says so;
     * {@code pages % 4 == 3}: reserved only (for demand paging). Memory is secure for some secure reservations.
     */
    record Buffer(int device, long pages, int attributes, int owner) implements Op {
        static final Gen<Op> GEN = ints(4).map(a -> new Buffer(a[0], a[1] % 10 == 0 ? 512 + a[1] % 3 : 1 + a[1] % 32, a[2] % ATTRIBUTES.length, a[3]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            Device d = w.device(device());
            MClient o = w.owner(owner());
            MClient owner = o == null || o.closed ? null : o;
            if (owner != null) {
                w.note(" via " + owner);
            }
            Client k = owner == null ? null : owner.client;
            MAssoc[] s = m.slots.get(d);
            MAssoc as = s[0] != null ? s[0] : s[1];
            boolean one = d.kind() == DeviceKind.ONE_TO_ONE;
            if (as == null) {
                if (d == w.cpu || m.crashed.contains(d)) {
                    return; // the CPU's VCM comes from CreateCpuVcm; a crashed device cannot be activated
                }
                MemoryType ddr = w.vcmm.memoryType("ddr");
                long start = one ? ddr.base() : REGIONS[0][0];
                long length = one ? ddr.size() : REGIONS[0][1];
                Vcm v = w.expect().call(() -> k == null ? (one ? w.vcmm.createOneToOneVcm(ddr) : w.vcmm.createVcm(start, length))
                    : (one ? k.createOneToOneVcm(start, length) : k.createVcm(start, length)));
                MVcm mv = new MVcm(v, one, start, length);
                GraphRun.own(owner, owner == null ? null : owner.vcms, mv, m.vcms);
                Association a = w.expect().call(() -> k == null ? w.vcmm.assoc(v, d) : k.assoc(v, d));
                as = new MAssoc(a, mv, d, AssociationMode.WHOLE);
                m.addAssoc(as);
                if (owner != null) {
                    owner.assocs.add(as);
                }
                w.activate(as);
            }
            MVcm v = as.vcm;
            ReservationAttributes wanted = ATTRIBUTES[attributes()];
            ReservationAttributes attrs = v.formats().stream().allMatch(f -> canExpress(f, wanted)) ? wanted : ReservationAttributes.RW;
            long len = pages() * PAGE;
            if (!one && pages() % 4 == 3) { // a lazy buffer: reserved only, for a handler to back on demand
                long align = len >= 2 * MIB ? 2 * MIB : PAGE;
                Reservation r = w.expect().refuse(!v.fits(len, align), VcmmOutOfMemoryException.class)
                    .call(() -> k == null ? v.vcm.reserve(len, attrs, align) : k.reserve(v.vcm, len, attrs, align));
                if (r != null) {
                    ReservationOps.added(owner, m, new MRes(r, v, r.address(), len, attrs));
                }
                return;
            }
            boolean secureMemory = attrs.secure() && !one && pages() % 2 == 1;
            String type = secureMemory ? "secure" : "ddr";
            PhysAllocOptions options = one ? PhysAllocOptions.CONTIGUOUS : PhysAllocOptions.DEFAULT;
            ChunkPolicy policy = one ? ChunkPolicy.PAGES_4K : ChunkPolicy.VCMM;
            PhysMem pm;
            try {
                pm = k == null ? w.vcmm.physAlloc(w.vcmm.memoryType(type), len, policy, options) : k.physAlloc(type, len, policy, options);
            } catch (VcmmOutOfMemoryException e) {
                w.count("Buffer out of memory");
                return;
            }
            w.handedOff(pm);
            MPm mp = new MPm(pm);
            GraphRun.own(owner, owner == null ? null : owner.pms, mp, m.pms);
            long align = len >= 2 * MIB ? 2 * MIB : PAGE;
            long at = pm.physicalAddress(0);
            GraphRun.Expect e = one ? w.expect().refuse(!v.covers(at, len), IllegalArgumentException.class)
                .refuse(v.covers(at, len) && v.overlaps(at, len), IllegalStateException.class)
                : w.expect().refuse(!v.fits(len, align), VcmmOutOfMemoryException.class);
            Reservation r = e.call(() -> one ? (k == null ? v.vcm.reserveAt(at, len, attrs) : k.reserveAt(v.vcm, at, len, attrs))
                : (k == null ? v.vcm.reserve(len, attrs, align) : k.reserve(v.vcm, len, attrs, align)));
            if (r == null) {
                return;
            }
            MRes mr = new MRes(r, v, r.address(), len, attrs);
            ReservationOps.added(owner, m, mr);
            if (v.formats().stream().allMatch(f -> canMap(f, mr))) {
                w.expect().run(() -> r.back(pm, 0));
                m.mappedInModel(mr, mp, 0);
            }
        }
    }
}
