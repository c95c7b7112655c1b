package dev.vcmm.property.graph;

import dev.vcmm.InvalidationBatch;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.List;

import static dev.vcmm.property.graph.GraphModel.pick;
import static dev.vcmm.property.graph.GraphShape.PAGE;
import static dev.vcmm.property.graph.Op.ints;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Sub-range operations on a backed reservation and batches: unback part of it, bind part of it to another allocation
 * (or another offset of its own), and an {@link InvalidationBatch} of unbacks, sub-range unbacks, remaps and
 * deactivations whose outcome must equal the single calls' once it commits (what it unbound is still held before).
 */
final class BindingOps {

    private BindingOps() {
    }

    /** @return a page-aligned sub-range {@code {offset, length}} of a reservation of {@code length} bytes; one in 12 bad */
    static long[] range(int a, int b, long length) {
        long pages = length / PAGE;
        long first = a % pages;
        long n = 1 + b % Math.max(1, Math.min(pages - first, 16));
        if (b % 12 == 11) {
            return new long[] {first * PAGE + (a % 3 == 0 ? 100 : 0), (pages - first + 1) * PAGE}; // misaligned or too long
        }
        return new long[] {first * PAGE, n * PAGE};
    }

    /** fit: pick a backed reservation. */
    record SubUnback(int res, int a, int b, boolean fit) implements Op {
        static final Gen<Op> GEN = ints(4).map(x -> new SubUnback(x[0], x[1], x[2], x[3] % 6 != 0));

        @Override
        public void apply(GraphRun w) {
            List<MRes> backed = w.model.reservations.stream().filter(x -> x.pm != null).toList();
            MRes r = fit() && !backed.isEmpty() ? backed.get(res() % backed.size()) : pick(w.model.reservations, w.model.deadReservations, res());
            if (r == null) {
                return;
            }
            long[] sub = range(a(), b(), r.length);
            boolean dead = w.model.deadReservations.contains(r);
            boolean bad = (sub[0] & (PAGE - 1)) != 0 || sub[1] > r.length - sub[0];
            w.note(String.format(" [0x%x, +0x%x)", sub[0], sub[1]));
            if (w.expect().refuse(dead || (!bad && !r.vcm.oneToOne && r.pm == null), IllegalStateException.class)
                .refuse(!dead && (bad || r.vcm.oneToOne), IllegalArgumentException.class)
                .run(() -> r.r.unback(sub[0], sub[1]))) {
                w.freedInModel(w.model.subUnbackInModel(r, sub[0], sub[1]));
                w.unmappedAt(r.address + sub[0]);
                w.unmappedAt(r.address + sub[0] + sub[1] - 8);
            }
        }
    }

    /** fit: a backed reservation and an allocation long enough (its own backing allocation one time in three). */
    record Remap(int res, int a, int b, int pm, long page, boolean fit) implements Op {
        static final Gen<Op> GEN = ints(6).map(x -> new Remap(x[0], x[1], x[2], x[3], x[4] % 5 == 0 ? x[4] % 300 : 0, x[5] % 6 != 0));

        @Override
        public void apply(GraphRun w) {
            GraphModel model = w.model;
            List<MRes> backed = model.reservations.stream().filter(x -> x.pm != null).toList();
            MRes r = fit() && !backed.isEmpty() ? backed.get(res() % backed.size()) : pick(model.reservations, model.deadReservations, res());
            if (r == null) {
                return;
            }
            long[] sub = range(a(), b(), r.length);
            MPm m;
            long off = page() * PAGE;
            if (fit() && r.pm != null && pm() % 3 == 0) {
                m = r.pm;
            } else if (fit()) {
                List<MPm> fits = model.pms.stream().filter(p -> p.pm.length() >= sub[1] && !p.pm.memoryType().isSecure()).toList();
                m = fits.isEmpty() ? pick(model.pms, model.deadPms, pm()) : fits.get(pm() % fits.size());
            } else {
                m = pick(model.pms, model.deadPms, pm());
            }
            if (m == null) {
                return;
            }
            if (fit() && m.pm.length() >= sub[1]) {
                off = off % (m.pm.length() - sub[1] + PAGE);
            }
            long moff = off;
            MPm on = m;
            boolean dead = model.deadReservations.contains(r);
            boolean bad = (sub[0] & (PAGE - 1)) != 0 || sub[1] > r.length - sub[0];
            boolean badMemory = on.pm.length() - moff < sub[1] || (on.pm.memoryType().isSecure() && !r.attributes.secure());
            boolean deadPm = model.deadPms.contains(on);
            w.note(String.format(" [0x%x, +0x%x) -> %s+0x%x", sub[0], sub[1], on.pm, moff));
            if (w.expect().refuse(dead || deadPm || r.pm == null, IllegalStateException.class)
                .refuse(bad || r.vcm.oneToOne || badMemory, IllegalArgumentException.class)
                .run(() -> r.r.remap(sub[0], sub[1], on.pm, moff))) {
                w.freedInModel(model.remapInModel(r, sub[0], sub[1], on, moff));
                w.unmappedAt(r.address + sub[0]);
            }
        }
    }

    /**
     * A batch of 1-6 unbacks, sub-range unbacks, remaps and deactivations: each runs (and is checked) as alone, the model
     * changes as for the single calls; allocations released by the batch must not be freed before the commit and must
     * be freed after it; then the usual checks run after the commit.
     */
    record Batch(List<Op> ops) implements Op {
        static final Gen<Op> GEN = lists().of(Generate.frequency(List.of(
                org.quicktheories.api.Pair.of(4, MemoryOps.Unback.GEN), org.quicktheories.api.Pair.of(3, SubUnback.GEN),
                org.quicktheories.api.Pair.of(3, Remap.GEN), org.quicktheories.api.Pair.of(2, VcmOps.Deactivate.GEN))))
            .ofSizeBetween(1, 6).map(l -> (Op) new Batch(List.copyOf(l)));

        @Override
        public void apply(GraphRun w) {
            w.batchFreed = new java.util.ArrayList<>();
            InvalidationBatch batch = w.vcmm.batch();
            try (batch) {
                for (Op op : ops()) {
                    w.trace.add("  in batch: " + op);
                    op.apply(w);
                }
            } finally {
                w.trace.add("  commit");
            }
            w.committed();
            w.note(" " + batch);
        }
    }
}
