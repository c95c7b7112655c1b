package dev.vcmm.property.graph;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.VcmmOutOfMemoryException;
import dev.vcmm.property.graph.GraphModel.MClient;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import org.quicktheories.core.Gen;

import java.util.ArrayList;
import java.util.List;

import static dev.vcmm.property.graph.GraphModel.canMap;
import static dev.vcmm.property.graph.GraphModel.pick;
import static dev.vcmm.property.graph.GraphShape.DATA_TYPES;
import static dev.vcmm.property.graph.GraphShape.PAGE;
import static dev.vcmm.property.graph.GraphShape.POLICIES;
import static dev.vcmm.property.graph.Op.ints;
import static dev.vcmm.property.graph.Op.pages;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The operations on physical memory and backings: physAlloc (several chunk policies, contiguous sometimes, of every
 * data memory type), physFree, back (with offsets; one allocation backing several reservations in several VCMs) and
 * unback. Each record is an operation, its generator is the constant beside it, and {@code apply} runs it on the
 * system and the model.
 */
final class MemoryOps {

    private MemoryOps() {
    }

    record PhysAlloc(String type, long bytes, ChunkPolicy policy, boolean contiguous, int owner) implements Op {
        static final Gen<Op> GEN = ints(5).map(a -> new PhysAlloc(DATA_TYPES[a[0] % 5 < 3 ? 0 : a[0] % 5 - 2],
            (a[1] < 6000 ? 16 + a[1] % 240 : pages(a[1])) * PAGE - (a[1] % 3 == 0 ? 100 : 0),
            POLICIES[a[2] % POLICIES.length], a[3] % 4 == 0, a[4]));

        @Override
        public void apply(GraphRun w) {
            MemoryType m = w.vcmm.memoryType(type());
            long max = PAGE << m.maxOrder();
            List<Long> usable = new ArrayList<>();
            for (long s : policy().chunkSizes()) {
                if (s <= max) {
                    usable.add(s);
                }
            }
            long unit = usable.isEmpty() ? PAGE : usable.getLast();
            long rounded = (bytes() + unit - 1) & -unit;
            long block = Long.highestOneBit(rounded) == rounded ? rounded : Long.highestOneBit(rounded) << 1;
            boolean impossible = bytes() > m.size() || usable.isEmpty() || rounded > m.size() || (contiguous() && block > max);
            long inUse = w.model.pms.stream().filter(p -> p.pm.memoryType() == m).mapToLong(p -> p.pm.length()).sum();
            GraphRun.Expect e = w.expect().refuse(impossible, IllegalArgumentException.class)
                .refuse(!impossible, VcmmOutOfMemoryException.class);
            e.maySucceed = !impossible && rounded <= m.size() - inUse;
            PhysAllocOptions options = contiguous() ? PhysAllocOptions.CONTIGUOUS : PhysAllocOptions.DEFAULT;
            MClient owner = w.owner(owner());
            PhysMem pm = w.create(owner, e, () -> w.vcmm.physAlloc(m, bytes(), policy(), options),
                k -> k.physAlloc(type(), bytes(), policy(), options));
            if (pm == null) {
                return;
            }
            assertEquals(rounded, pm.length(), () -> pm + w.where());
            assertTrue(!contiguous() || pm.isContiguous(), () -> pm + w.where());
            for (PhysMem.Chunk c : pm.chunks()) {
                assertTrue(c.pa() >= m.base() && c.end() <= m.base() + m.size(), () -> c + " outside " + m + w.where());
                assertTrue(usable.contains(c.size()), () -> c + " is not a chunk size of " + policy() + w.where());
                for (MPm o : w.model.pms) {
                    for (PhysMem.Chunk oc : o.pm.chunks()) {
                        assertTrue(c.end() <= oc.pa() || oc.end() <= c.pa(), () -> c + " is owned twice: " + o.pm + w.where());
                    }
                }
            }
            w.handedOff(pm);
            GraphRun.own(owner, owner == null ? null : owner.pms, new MPm(pm), w.model.pms);
        }
    }

    record PhysFree(int pm) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new PhysFree(a[0]));

        @Override
        public void apply(GraphRun w) {
            MPm m = pick(w.model.pms, w.model.deadPms, pm());
            if (m == null) {
                return;
            }
            boolean freed = w.model.deadPms.contains(m);
            if (w.expect().refuse(freed, IllegalStateException.class).refuse(!freed && !m.backs.isEmpty(), VcmmBusyException.class)
                .run(m.pm::free)) {
                w.model.physFreeInModel(m);
                assertTrue(m.pm.isFreed(), w.where());
            }
        }
    }

    /**
     * fit: pick an unbacked reservation and, among the allocations long enough and of a fitting security, one
     * to back it with (one-to-one: the allocation holding the reservation's address).
     */
    record Back(int res, int pm, long page, boolean fit) implements Op {
        static final Gen<Op> GEN = ints(4).map(a -> new Back(a[0], a[1], a[2] % 5 == 0 ? a[2] % 700 : 0, a[3] % 4 != 0));

        @Override
        public void apply(GraphRun w) {
            GraphModel model = w.model;
            List<MRes> unbacked = model.reservations.stream().filter(x -> x.pm == null).toList();
            MRes r = fit() && !unbacked.isEmpty() ? unbacked.get(res() % unbacked.size()) : pick(model.reservations, model.deadReservations, res());
            if (r == null) {
                return;
            }
            MPm m;
            long offset = page() * PAGE;
            if (fit() && r.vcm.oneToOne) {
                m = null;
                for (MPm p : model.pms) {
                    for (int i = 0; i < p.pm.chunkCount() && m == null; i++) {
                        PhysMem.Chunk c = p.pm.chunks().get(i);
                        if (r.address >= c.pa() && r.address < c.end()) {
                            m = p;
                            long off = 0;
                            for (int j = 0; j < i; j++) {
                                off += p.pm.chunks().get(j).size();
                            }
                            offset = off + (r.address - c.pa());
                        }
                    }
                }
                if (m == null) {
                    m = pick(model.pms, model.deadPms, pm());
                }
            } else if (fit()) {
                List<MPm> longEnough = model.pms.stream().filter(p -> p.pm.length() >= r.length
                    && (r.attributes.secure() || !p.pm.memoryType().isSecure())).toList();
                m = longEnough.isEmpty() ? pick(model.pms, model.deadPms, pm()) : longEnough.get(pm() % longEnough.size());
                if (m != null && m.pm.length() >= r.length) {
                    offset = offset % (m.pm.length() - r.length + PAGE);
                }
            } else {
                m = pick(model.pms, model.deadPms, pm());
            }
            if (m == null) {
                return;
            }
            MPm on = m;
            long off = offset;
            boolean tooShort = on.pm.length() - off < r.length;
            boolean secureMismatch = on.pm.memoryType().isSecure() && !r.attributes.secure();
            boolean notIdentity = false;
            if (r.vcm.oneToOne && !tooShort) {
                for (long d = 0; d < r.length && !notIdentity; d += PAGE) {
                    notIdentity = on.pm.physicalAddress(off + d) != r.address + d;
                }
            }
            boolean unmappable = r.vcm.formats().stream().anyMatch(f -> !canMap(f, r));
            if (w.expect().refuse(tooShort || secureMismatch || notIdentity || unmappable, IllegalArgumentException.class)
                .refuse(model.deadReservations.contains(r) || r.pm != null || model.deadPms.contains(on), IllegalStateException.class)
                .run(() -> r.r.back(on.pm, off))) {
                model.mappedInModel(r, on, off);
            }
        }
    }

    /** fit: pick among the backed reservations. */
    record Unback(int res, boolean fit) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new Unback(a[0], a[1] % 4 != 0));

        @Override
        public void apply(GraphRun w) {
            List<MRes> backed = w.model.reservations.stream().filter(x -> x.pm != null).toList();
            MRes r = fit() && !backed.isEmpty() ? backed.get(res() % backed.size()) : pick(w.model.reservations, w.model.deadReservations, res());
            if (r == null) {
                return;
            }
            if (w.expect().refuse(r.pm == null, IllegalStateException.class).run(r.r::unback)) {
                w.unmapped(r);
                w.unbackInModel(r);
            }
        }
    }
}
