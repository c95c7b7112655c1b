package dev.vcmm.property.graph;

import dev.vcmm.Association;
import dev.vcmm.AssociationMode;
import dev.vcmm.Device;
import dev.vcmm.DeviceKind;
import dev.vcmm.MemoryType;
import dev.vcmm.Reservation;
import dev.vcmm.Vcm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.property.graph.GraphModel.MAssoc;
import dev.vcmm.property.graph.GraphModel.MClient;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;
import org.quicktheories.core.Gen;

import java.util.List;

import static dev.vcmm.property.graph.GraphModel.canExpress;
import static dev.vcmm.property.graph.GraphModel.canMap;
import static dev.vcmm.property.graph.GraphModel.pick;
import static dev.vcmm.property.graph.GraphShape.MODES;
import static dev.vcmm.property.graph.GraphShape.REGIONS;
import static dev.vcmm.property.graph.Op.ints;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The operations on address spaces and their associations: createVcm (virtual, one-to-one, CPU), cloneVcm, free;
 * assoc (every mode), activate, deactivate, deassoc. Each record is an operation, its generator is the constant
 * beside it, and {@code apply} runs it on the system and the model.
 */
final class VcmOps {

    private VcmOps() {
    }

    /** owner (here and in every op): {@code owner % 3 != 0} creates through the Vcmm, else through a client picked by {@code owner / 3}. */
    record CreateVcm(int region, int owner) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new CreateVcm(a[0] % REGIONS.length, a[1]));

        @Override
        public void apply(GraphRun w) {
            long[] region = REGIONS[region()];
            MClient owner = w.owner(owner());
            Vcm v = w.create(owner, w.expect(), () -> w.vcmm.createVcm(region[0], region[1]), k -> k.createVcm(region[0], region[1]));
            if (v != null) {
                GraphRun.own(owner, owner == null ? null : owner.vcms, new MVcm(v, false, region[0], region[1]), w.model.vcms);
            }
        }
    }

    record CreateOneToOneVcm(boolean secure, int owner) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new CreateOneToOneVcm(a[0] % 3 == 2, a[1]));

        @Override
        public void apply(GraphRun w) {
            MemoryType m = w.vcmm.memoryType(secure() ? "secure" : "ddr");
            MClient owner = w.owner(owner());
            Vcm v = w.create(owner, w.expect(), () -> w.vcmm.createOneToOneVcm(m), k -> k.createOneToOneVcm(m.base(), m.size()));
            if (v != null) {
                GraphRun.own(owner, owner == null ? null : owner.vcms, new MVcm(v, true, m.base(), m.size()), w.model.vcms);
            }
        }
    }

    record CreateCpuVcm(int region) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new CreateCpuVcm(a[0] % 2 == 0 ? 0 : 2));

        @Override
        public void apply(GraphRun w) {
            long[] region = REGIONS[region()];
            MAssoc[] s = w.model.slots.get(w.cpu);
            Vcm v = w.expect().refuse(s[0] != null || s[1] != null, VcmmBusyException.class)
                .refuse(w.model.crashed.contains(w.cpu), IllegalStateException.class)
                .call(() -> w.vcmm.createCpuVcm(w.cpu, region[0], region[1]));
            if (v != null) {
                MVcm mv = new MVcm(v, false, region[0], region[1]);
                w.model.addVcm(mv);
                assertEquals(1, v.associations().size(), w.where());
                MAssoc a = new MAssoc(v.associations().getFirst(), mv, w.cpu, AssociationMode.WHOLE);
                w.model.addAssoc(a);
                w.model.activateInModel(a);
            }
        }
    }

    record CloneVcm(int vcm) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new CloneVcm(a[0]));

        @Override
        public void apply(GraphRun w) {
            MVcm src = pick(w.model.vcms, List.of(), vcm());
            if (src == null) {
                return;
            }
            Vcm v = w.expect().call(() -> w.vcmm.cloneVcm(src.vcm));
            MVcm copy = new MVcm(v, src.oneToOne, src.start, src.length);
            w.model.addVcm(copy);
            for (MRes r : src.res.values()) {
                Reservation cr = v.reservationAt(r.address);
                assertTrue(cr != null && cr.address() == r.address && cr.length() == r.length, () -> "clone lacks " + r.r + w.where());
                MRes mr = new MRes(cr, copy, r.address, r.length, r.attributes);
                w.model.addReservation(mr);
                if (r.pm != null) {
                    w.model.mappedInModel(mr, r.pm, r.offset);
                }
            }
        }
    }

    record FreeVcm(int vcm) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new FreeVcm(a[0]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            if (vcm() % 10 == 9 && !m.deadVcms.isEmpty()) {
                Vcm dead = m.deadVcms.get(vcm() / 10 % m.deadVcms.size());
                w.expect().refuse(true, IllegalStateException.class).run(dead::free);
                return;
            }
            MVcm v = pick(m.vcms, List.of(), vcm());
            if (v == null) {
                return;
            }
            boolean busy = !v.res.isEmpty() || !v.assocs.isEmpty() || !v.bounds.isEmpty();
            if (w.expect().refuse(busy, VcmmBusyException.class).run(v.vcm::free)) {
                m.freeInModel(v);
                assertTrue(v.vcm.isFreed(), w.where());
            }
        }
    }

    record Assoc(int vcm, int device, AssociationMode mode, int owner) implements Op {
        static final Gen<Op> GEN = ints(4).map(a -> new Assoc(a[0], a[1], MODES[a[2] % MODES.length], a[3]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            Device d = w.device(device());
            if (vcm() % 10 == 9 && !m.deadVcms.isEmpty()) {
                Vcm dead = m.deadVcms.get(vcm() / 10 % m.deadVcms.size());
                w.expect().refuse(true, IllegalStateException.class).refuse(true, IllegalArgumentException.class)
                    .run(() -> w.vcmm.assoc(dead, d, mode()));
                return;
            }
            MVcm v = pick(m.vcms, List.of(), vcm());
            if (v == null) {
                return;
            }
            boolean oneToOne = d.kind() == DeviceKind.ONE_TO_ONE;
            PageTableFormat f = d.format();
            boolean badTable = false;
            if (f != null && !v.formats().contains(f)) {
                for (MRes r : v.res.values()) {
                    badTable |= !canExpress(f, r.attributes) || (r.pm != null && !canMap(f, r));
                }
            }
            // a VCM the device could never translate: outside its input space, or not in the half the mode programs
            boolean unreachable = !GraphModel.reachable(d, v, mode());
            MClient owner = w.owner(owner());
            Association a = w.create(owner, w.expect()
                    .refuse(unreachable, IllegalArgumentException.class)
                    .refuse(oneToOne != v.oneToOne, IllegalArgumentException.class)
                    .refuse(oneToOne && mode() != AssociationMode.WHOLE, IllegalArgumentException.class)
                    .refuse(v.assocs.stream().anyMatch(x -> x.device == d), IllegalArgumentException.class)
                    .refuse(badTable, IllegalArgumentException.class),
                () -> w.vcmm.assoc(v.vcm, d, mode()), k -> k.assoc(v.vcm, d, mode()));
            if (a != null) {
                assertFalse(a.isActive(), w.where());
                MAssoc ma = new MAssoc(a, v, d, mode());
                m.addAssoc(ma);
                if (owner != null) {
                    owner.assocs.add(ma);
                }
            }
        }
    }

    record Activate(int assoc) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new Activate(a[0]));

        @Override
        public void apply(GraphRun w) {
            MAssoc a = pick(w.model.assocs, w.model.deadAssocs, assoc());
            if (a != null) {
                w.activate(a);
            }
        }
    }

    record Deactivate(int assoc) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new Deactivate(a[0]));

        @Override
        public void apply(GraphRun w) {
            MAssoc a = pick(w.model.assocs, w.model.deadAssocs, assoc());
            if (a == null) {
                return;
            }
            if (w.expect().refuse(w.model.deadAssocs.contains(a), IllegalStateException.class).call(a.a::deactivate) != null) {
                w.model.deactivateInModel(a);
                a.vcm.res.values().forEach(w::unmapped);
            }
        }
    }

    record Deassoc(int assoc) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new Deassoc(a[0]));

        @Override
        public void apply(GraphRun w) {
            MAssoc a = pick(w.model.assocs, w.model.deadAssocs, assoc());
            if (a == null) {
                return;
            }
            boolean removed = w.model.deadAssocs.contains(a);
            if (w.expect().refuse(removed, IllegalStateException.class).refuse(!removed && a.active, VcmmBusyException.class)
                .run(a.a::deassoc)) {
                w.model.removeAssocInModel(a);
                assertTrue(a.a.isRemoved(), w.where());
                w.model.sweepOrphanVcms();
            }
        }
    }
}
