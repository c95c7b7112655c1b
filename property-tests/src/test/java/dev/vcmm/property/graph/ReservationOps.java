package dev.vcmm.property.graph;

import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.VcmmOutOfMemoryException;
import dev.vcmm.property.graph.GraphModel.MClient;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;
import org.quicktheories.core.Gen;

import java.util.List;

import static dev.vcmm.property.graph.GraphModel.canExpress;
import static dev.vcmm.property.graph.GraphModel.pick;
import static dev.vcmm.property.graph.GraphShape.ALIGNS;
import static dev.vcmm.property.graph.GraphShape.ATTRIBUTES;
import static dev.vcmm.property.graph.GraphShape.PAGE;
import static dev.vcmm.property.graph.Op.ints;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The operations on reservations: reserve (with an alignment) anywhere, reserveAt a place (in a VCM, or at an
 * allocation's physical address for one-to-one VCMs), unreserve. Each record is an operation, its generator is the
 * constant beside it, and {@code apply} runs it on the system and the model.
 */
final class ReservationOps {

    private ReservationOps() {
    }

    record Reserve(int vcm, long pages, long align, int attributes, int owner) implements Op {
        static final Gen<Op> GEN = ints(5).map(a -> new Reserve(a[0], Op.pages(a[1]), ALIGNS[a[2] % ALIGNS.length], a[3] % ATTRIBUTES.length, a[4]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            if (vcm() % 10 == 9 && !m.deadVcms.isEmpty()) {
                Vcm dead = m.deadVcms.get(vcm() / 10 % m.deadVcms.size());
                w.expect().refuse(true, IllegalStateException.class)
                    .run(() -> dead.reserve(pages() * PAGE, ReservationAttributes.RW, align()));
                return;
            }
            MVcm v = pick(m.vcms, List.of(), vcm());
            if (v == null) {
                return;
            }
            ReservationAttributes attrs = ATTRIBUTES[attributes()];
            long len = pages() * PAGE;
            boolean inexpressible = v.formats().stream().anyMatch(f -> !canExpress(f, attrs));
            MClient owner = w.owner(owner());
            Reservation r = w.create(owner, w.expect().refuse(inexpressible, IllegalArgumentException.class)
                    .refuse(!v.fits(len, align()), VcmmOutOfMemoryException.class),
                () -> v.vcm.reserve(len - 1, attrs, align()),  // len - 1: rounded up to len
                k -> k.reserve(v.vcm, len - 1, attrs, align()));
            if (r != null) {
                assertEquals(len, r.length(), w.where());
                assertEquals(0, r.address() & (align() - 1), () -> "misaligned " + r + w.where());
                assertTrue(v.covers(r.address(), len) && !v.overlaps(r.address(), len), () -> "bad place for " + r + w.where());
                added(owner, m, new MRes(r, v, r.address(), len, attrs));
            }
        }
    }

    /** At {@code page} pages into the VCM, or (onMemory) at byte {@code page * 4K} of allocation {@code pm}. */
    record ReserveAt(int vcm, long page, long pages, int attributes, boolean onMemory, int pm, int owner) implements Op {
        static final Gen<Op> GEN = ints(6).map(a -> new ReserveAt(a[0], a[1] % 3 == 0 ? a[1] : a[1] % 64, Op.pages(a[2]),
            a[3] % ATTRIBUTES.length, a[4] % 2 == 0, a[4] / 2, a[5]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            if (vcm() % 10 == 9 && !m.deadVcms.isEmpty()) {
                Vcm dead = m.deadVcms.get(vcm() / 10 % m.deadVcms.size());
                w.expect().refuse(true, IllegalStateException.class).refuse(true, IllegalArgumentException.class)
                    .run(() -> dead.reserveAt(dead.start(), PAGE, ReservationAttributes.RW));
                return;
            }
            MVcm v = pick(m.vcms, List.of(), vcm());
            if (v == null) {
                return;
            }
            ReservationAttributes attrs = ATTRIBUTES[attributes()];
            long len = pages() * PAGE;
            long address = v.start + page() * PAGE;
            if (onMemory() && !m.pms.isEmpty()) {
                PhysMem on = m.pms.get(pm() % m.pms.size()).pm;
                address = on.physicalAddress(page() * PAGE % on.length());
                len = Math.min(len, on.length() - page() * PAGE % on.length());
            }
            long at = address;
            long length = len;
            boolean outside = !v.covers(at, length);
            boolean inexpressible = v.formats().stream().anyMatch(f -> !canExpress(f, attrs));
            MClient owner = w.owner(owner());
            Reservation r = w.create(owner, w.expect().refuse(outside, IllegalArgumentException.class)
                    .refuse(inexpressible, IllegalArgumentException.class)
                    .refuse(!outside && v.overlaps(at, length), IllegalStateException.class),
                () -> v.vcm.reserveAt(at, length, attrs), k -> k.reserveAt(v.vcm, at, length, attrs));
            if (r != null) {
                assertEquals(at, r.address(), w.where());
                assertEquals(length, r.length(), w.where());
                added(owner, m, new MRes(r, v, at, length, attrs));
            }
        }
    }

    record Unreserve(int res) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new Unreserve(a[0]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MRes r = pick(m.reservations, m.deadReservations, res());
            if (r == null) {
                return;
            }
            boolean released = m.deadReservations.contains(r);
            boolean shared = !released && r.refs > 1;
            if (w.expect().refuse(released, IllegalStateException.class).refuse(!shared && r.pm != null, VcmmBusyException.class)
                .run(r.r::unreserve)) {
                if (shared) {
                    r.refs--; // another holder keeps it
                    return;
                }
                m.unreserveInModel(r);
                w.unmapped(r);
                m.sweepOrphanVcms();
            }
        }
    }

    /** A new reservation in the model, and in what its owner owns. */
    static void added(MClient owner, GraphModel m, MRes r) {
        m.addReservation(r);
        if (owner != null) {
            owner.res.add(r);
        }
    }
}
