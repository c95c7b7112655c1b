package dev.vcmm.property.graph;

import dev.vcmm.Binding;
import dev.vcmm.Bound;
import dev.vcmm.ChunkPolicy;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.VcmmOutOfMemoryException;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.property.graph.GraphModel.MBinding;
import dev.vcmm.property.graph.GraphModel.MBound;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;
import org.quicktheories.core.Gen;

import java.util.List;

import static dev.vcmm.property.graph.GraphModel.canExpress;
import static dev.vcmm.property.graph.GraphModel.pick;
import static dev.vcmm.property.graph.GraphShape.ALIGNS;
import static dev.vcmm.property.graph.GraphShape.ATTRIBUTES;
import static dev.vcmm.property.graph.GraphShape.DATA_TYPES;
import static dev.vcmm.property.graph.GraphShape.PAGE;
import static dev.vcmm.property.graph.GraphShape.POLICIES;
import static dev.vcmm.property.graph.Op.ints;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The rest of the original VCMM interface as operations: change a reservation's attributes
 * ({@code vcm_set_res_attr}), copy between reservations ({@code vcm_res_copy}), wrap a physical range
 * ({@code vcm_map_phys_addr}), bounds ({@code vcm_create_bound}, {@code vcm_reserve_from_bound},
 * {@code vcm_free_bound}), one-call bindings (VCM v2's {@code vcm_make_binding}, {@code vcm_map}, and their destroy)
 * and reference-counted reservations ({@code vcm_ref_reserve}). Each predicts its refusals from the model; a refused
 * call must change nothing (the checks after the step compare everything).
 */
final class ApiOps {

    private ApiOps() {
    }

    record SetAttributes(int res, int attributes) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new SetAttributes(a[0], a[1] % ATTRIBUTES.length));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MRes r = pick(m.reservations, m.deadReservations, res());
            if (r == null) {
                return;
            }
            ReservationAttributes attrs = ATTRIBUTES[attributes()];
            boolean dead = m.deadReservations.contains(r);
            boolean inexpressible = !dead && r.vcm.formats().stream().anyMatch(f -> !canExpress(f, attrs));
            boolean secureMismatch = !dead && r.pm != null && r.pm.pm.memoryType().isSecure() && !attrs.secure();
            if (w.expect().refuse(dead, IllegalStateException.class).refuse(inexpressible || secureMismatch, IllegalArgumentException.class)
                .run(() -> r.r.setAttributes(attrs))) {
                r.attributes = attrs;
                w.unmapped(r); // probe DMA there next: the old permissions must be gone
            }
        }
    }

    /** Copies {@code bytes} from {@code src} at {@code srcOff} to {@code dst} at {@code dstOff}, through their memory. */
    record ResCopy(int dst, long dstOff, int src, long srcOff, long bytes) implements Op {
        static final Gen<Op> GEN = ints(5).map(a -> new ResCopy(a[0], a[1] % 8 == 0 ? a[1] * 37L : a[1] % 3 * PAGE + a[1] % 97,
            a[2], a[3] % 8 == 0 ? a[3] * 41L : a[3] % 3 * PAGE + a[3] % 13, a[4] % 10 == 0 ? 70_000 + a[4] : 1 + a[4] % 6000));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MRes d = pick(m.reservations, m.deadReservations, dst());
            MRes s = pick(m.reservations, m.deadReservations, src());
            if (d == null || s == null) {
                return;
            }
            boolean outside = dstOff() + bytes() > d.length || srcOff() + bytes() > s.length;
            boolean unbacked = !outside && (d.pm == null || s.pm == null);
            if (!w.expect().refuse(outside, IndexOutOfBoundsException.class).refuse(unbacked, IllegalStateException.class)
                .run(() -> w.vcmm.copy(d.r, dstOff(), s.r, srcOff(), bytes()))) {
                return;
            }
            // the same pieces in the same order as the copy: overlapping ranges copy as it does
            long buffer = Math.min(bytes(), 64 << 10);
            long done = 0;
            while (done < bytes()) {
                long sPa = s.pm.pm.physicalAddress(s.offset + srcOff() + done);
                long dPa = d.pm.pm.physicalAddress(d.offset + dstOff() + done);
                int n = (int) Math.min(Math.min(bytes() - done, buffer), Math.min(PAGE - (sPa & (PAGE - 1)), PAGE - (dPa & (PAGE - 1))));
                m.modelWrite(dPa, m.modelRead(sPa, n), 0, n);
                done += n;
            }
            w.checks.checkPhysical(d.pm.pm.physicalAddress(d.offset + dstOff()), (int) Math.min(bytes(), PAGE - (dstOff() & (PAGE - 1))));
        }
    }

    /** Wraps {@code pages} pages at page {@code page} of a data memory type (wrapping around its size). */
    record PhysAllocAt(String type, long page, long pages) implements Op {
        static final Gen<Op> GEN = ints(3).map(a -> new PhysAllocAt(DATA_TYPES[a[0] % 4 < 2 ? 0 : a[0] % 4 - 1],
            a[1] % 2 == 0 ? a[1] : a[1] % 64, a[2] % 8 == 0 ? 1 + a[2] % 700 : 1 + a[2] % 48));

        @Override
        public void apply(GraphRun w) {
            MemoryType m = w.vcmm.memoryType(type());
            long pa = m.base() + page() * PAGE % m.size();
            long len = pages() * PAGE;
            boolean outside = pa - m.base() > m.size() - len;
            boolean taken = false;
            for (MPm p : w.model.pms) {
                for (PhysMem.Chunk c : p.pm.chunks()) {
                    taken |= c.pa() < pa + len && pa < c.end();
                }
            }
            PhysMem pm = w.expect().refuse(outside, IllegalArgumentException.class).refuse(!outside && taken, VcmmBusyException.class)
                .call(() -> w.vcmm.physAllocAt(pa, len));
            if (pm != null) {
                assertEquals(pa, pm.physicalAddress(0), w.where());
                assertEquals(len, pm.length(), w.where());
                assertTrue(pm.isContiguous(), w.where());
                w.model.pms.add(new MPm(pm)); // not zeroed: the model keeps what the pages held
                w.checks.checkPhysical(pa, (int) PAGE);
            }
        }
    }

    record CreateBound(int vcm, long pages, long align) implements Op {
        static final Gen<Op> GEN = ints(3).map(a -> new CreateBound(a[0], 1 + a[1] % 512, ALIGNS[a[2] % ALIGNS.length]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            if (vcm() % 10 == 9 && !m.deadVcms.isEmpty()) {
                Vcm dead = m.deadVcms.get(vcm() / 10 % m.deadVcms.size());
                w.expect().refuse(true, IllegalStateException.class).call(() -> dead.createBound(PAGE, PAGE));
                return;
            }
            MVcm v = pick(m.vcms, List.of(), vcm());
            if (v == null) {
                return;
            }
            long len = pages() * PAGE;
            Bound b = w.expect().refuse(!v.fits(len, align()), VcmmOutOfMemoryException.class)
                .call(() -> v.vcm.createBound(len, align()));
            if (b != null) {
                assertEquals(0, b.start() & (align() - 1), w.where());
                assertTrue(v.covers(b.start(), len) && !v.overlaps(b.start(), len), () -> "bad place for " + b + w.where());
                MBound mb = new MBound(b, v, b.start(), len);
                v.bounds.add(mb);
                m.bounds.add(mb);
            }
        }
    }

    record BoundReserve(int bound, long pages, long align, int attributes) implements Op {
        static final Gen<Op> GEN = ints(4).map(a -> new BoundReserve(a[0], 1 + a[1] % 64, ALIGNS[a[2] % ALIGNS.length], a[3] % ATTRIBUTES.length));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MBound b = pick(m.bounds, m.deadBounds, bound());
            if (b == null) {
                return;
            }
            ReservationAttributes attrs = ATTRIBUTES[attributes()];
            long len = pages() * PAGE;
            boolean dead = m.deadBounds.contains(b);
            boolean inexpressible = !dead && b.vcm.formats().stream().anyMatch(f -> !canExpress(f, attrs));
            Reservation r = w.expect().refuse(dead, IllegalStateException.class).refuse(inexpressible, IllegalArgumentException.class)
                .refuse(!dead && !inexpressible && !b.fits(len, align()), VcmmOutOfMemoryException.class)
                .call(() -> b.b.reserve(len - 1, attrs, align()));
            if (r != null) {
                assertEquals(len, r.length(), w.where());
                assertEquals(0, r.address() & (align() - 1), w.where());
                assertTrue(Long.compareUnsigned(r.address() - b.start, b.length) < 0 && Long.compareUnsigned(len, b.length - (r.address() - b.start)) <= 0,
                    () -> r + " outside " + b.b + w.where());
                MRes mr = new MRes(r, b.vcm, r.address(), len, attrs);
                mr.bound = b;
                b.res.add(mr);
                m.addReservation(mr);
            }
        }
    }

    record FreeBound(int bound) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new FreeBound(a[0]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MBound b = pick(m.bounds, m.deadBounds, bound());
            if (b == null) {
                return;
            }
            boolean dead = m.deadBounds.contains(b);
            if (w.expect().refuse(dead, IllegalStateException.class).refuse(!dead && !b.res.isEmpty(), VcmmBusyException.class)
                .run(b.b::free)) {
                m.bounds.remove(b);
                b.vcm.bounds.remove(b);
                m.deadBounds.add(b);
                m.sweepOrphanVcms();
                assertTrue(b.b.isFreed(), w.where());
            }
        }
    }

    /** {@code Binding.make} ({@code vcm_make_binding}): allocate, reserve and back in one call. */
    record MakeBinding(int vcm, String type, long pages, ChunkPolicy policy, int attributes) implements Op {
        static final Gen<Op> GEN = ints(5).map(a -> new MakeBinding(a[0], DATA_TYPES[a[1] % 5 < 3 ? 0 : a[1] % 5 - 2],
            a[2] % 20 == 0 ? 4096 + a[2] % 4096 : 1 + a[2] % 200, POLICIES[a[3] % POLICIES.length], a[4] % ATTRIBUTES.length));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MemoryType type = w.vcmm.memoryType(type());
            ReservationAttributes attrs = ATTRIBUTES[attributes()];
            long len = pages() * PAGE;
            if (vcm() % 10 == 9 && !m.deadVcms.isEmpty()) {
                Vcm dead = m.deadVcms.get(vcm() / 10 % m.deadVcms.size());
                w.expect().refuse(true, IllegalStateException.class).call(() -> Binding.make(dead, type, len, policy(), attrs));
                return;
            }
            MVcm v = pick(m.vcms, List.of(), vcm());
            if (v == null) {
                return;
            }
            long unit = 0;
            for (long c : policy().chunkSizes()) {
                unit = c <= (PAGE << type.maxOrder()) ? c : unit;
            }
            long rounded = unit == 0 ? 0 : (len + unit - 1) & -unit;
            boolean tooLarge = len > type.size() || unit == 0 || rounded > type.size();
            boolean inexpressible = v.formats().stream().anyMatch(f -> !canExpress(f, attrs));
            boolean secureMismatch = type.isSecure() && !attrs.secure();
            boolean bad = tooLarge || inexpressible || secureMismatch || partial(v);
            // memory may run out (the model does not track fragmentation), and in a one-to-one VCM the range at the
            // memory's address may be outside it or taken
            GraphRun.Expect e = w.expect().refuse(bad || v.oneToOne, IllegalArgumentException.class)
                .refuse(!tooLarge, VcmmOutOfMemoryException.class).refuse(v.oneToOne, IllegalStateException.class);
            e.maySucceed = !bad || (v.oneToOne && !tooLarge && !secureMismatch);
            boolean fitsBefore = v.fits(len, PAGE);
            Binding b = e.call(() -> Binding.make(v.vcm, type, len, policy(), attrs));
            if (b == null) {
                return;
            }
            Reservation r = b.reservation();
            assertTrue(b.ownsMemory(), w.where());
            if (v.oneToOne) {
                assertEquals(b.memory().physicalAddress(0), r.address(), () -> "one-to-one binding off its memory: " + b + w.where());
            } else {
                assertTrue(fitsBefore, () -> "the model had no room for " + b + w.where());
            }
            assertTrue(v.covers(r.address(), len) && !v.overlaps(r.address(), len), () -> "bad place for " + b + w.where());
            w.handedOff(b.memory());
            MPm mp = new MPm(b.memory());
            m.pms.add(mp);
            MRes mr = new MRes(r, v, r.address(), len, attrs);
            m.addReservation(mr);
            m.mappedInModel(mr, mp, 0);
            m.bindings.add(new MBinding(b, mr, mp, true));
        }
    }

    /** {@code Binding.map} ({@code vcm_map}): reserve and back with memory the caller has. */
    record MapBinding(int vcm, int pm, int attributes) implements Op {
        static final Gen<Op> GEN = ints(3).map(a -> new MapBinding(a[0], a[1], a[2] % ATTRIBUTES.length));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MVcm v = pick(m.vcms, List.of(), vcm());
            MPm p = pick(m.pms, m.deadPms, pm());
            if (v == null || p == null) {
                return;
            }
            ReservationAttributes attrs = ATTRIBUTES[attributes()];
            long len = p.pm.length();
            boolean freed = m.deadPms.contains(p);
            boolean inexpressible = v.formats().stream().anyMatch(f -> !canExpress(f, attrs));
            boolean secureMismatch = p.pm.memoryType().isSecure() && !attrs.secure();
            long at = p.pm.physicalAddress(0);
            GraphRun.Expect e = w.expect().refuse(freed, IllegalStateException.class);
            if (!freed && v.oneToOne) {
                boolean misplaced = !p.pm.isContiguous() || !v.covers(at, len);
                e.refuse(misplaced || secureMismatch, IllegalArgumentException.class)
                    .refuse(!misplaced && v.overlaps(at, len), IllegalStateException.class);
            } else if (!freed) {
                e.refuse(inexpressible, IllegalArgumentException.class)
                    .refuse(!inexpressible && !v.fits(len, PAGE), VcmmOutOfMemoryException.class)
                    .refuse(secureMismatch || partial(v), IllegalArgumentException.class);
                e.maySucceed = partial(v) && !inexpressible && !secureMismatch && v.fits(len, PAGE);
            }
            Binding b = e.call(() -> Binding.map(v.vcm, p.pm, attrs));
            if (b == null) {
                return;
            }
            Reservation r = b.reservation();
            assertFalse(b.ownsMemory(), w.where());
            assertSame(p.pm, b.memory(), w.where());
            assertTrue(!v.oneToOne || r.address() == at, w.where());
            assertTrue(v.covers(r.address(), len) && !v.overlaps(r.address(), len), () -> "bad place for " + b + w.where());
            MRes mr = new MRes(r, v, r.address(), len, attrs);
            m.addReservation(mr);
            m.mappedInModel(mr, p, 0);
            m.bindings.add(new MBinding(b, mr, p, false));
        }
    }

    /** {@code Binding.close}: drops a reference; the last one unbacks, unreserves and frees what the binding made. */
    record CloseBinding(int binding) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new CloseBinding(a[0]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            if (m.bindings.isEmpty()) {
                return;
            }
            MBinding b = m.bindings.get(binding() % m.bindings.size());
            MRes r = b.r();
            boolean released = !m.reservations.contains(r);
            boolean shared = !released && r.refs > 1;
            boolean ownsLive = b.owns() && m.pms.contains(b.pm());
            long others = ownsLive ? b.pm().backs.stream().filter(x -> x != r).count() : 0;
            if (!w.expect().refuse(released, IllegalStateException.class).refuse(!released && !shared && others > 0, VcmmBusyException.class)
                .run(b.b()::close)) {
                return;
            }
            if (shared) {
                r.refs--;
                return;
            }
            if (r.pm != null) {
                w.unbackInModel(r);
            }
            m.unreserveInModel(r);
            w.unmapped(r);
            m.sweepOrphanVcms();
            if (ownsLive) {
                m.physFreeInModel(b.pm());
                assertTrue(b.pm().pm.isFreed(), w.where());
            }
        }
    }

    /** {@code Reservation.ref} ({@code vcm_ref_reserve}). */
    record Ref(int res) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new Ref(a[0]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            MRes r = pick(m.reservations, m.deadReservations, res());
            if (r == null) {
                return;
            }
            boolean dead = m.deadReservations.contains(r);
            if (w.expect().refuse(dead, IllegalStateException.class).run(r.r::ref)) {
                r.refs++;
            }
        }
    }

    /**
     * {@code Device.setSplit} ({@code VCM_SPLIT}): kind 0 the top bit, 1 TTBCR.N = {@code a % 9} (8 is invalid), 2
     * TCR.T0SZ/T1SZ = {@code a % 65}, {@code b % 65} (0 and 64 are invalid).
     */
    record SetSplit(int device, int kind, int a, int b) implements Op {
        static final Gen<Op> GEN = ints(4).map(x -> new SetSplit(x[0], x[1] % 3, x[2] % 10 < 7 ? x[2] % 9 : 16 + x[2] % 49,
            x[3] % 10 < 7 ? 16 + x[3] % 49 : x[3] % 65));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            dev.vcmm.Device d = w.device(device());
            int n = a() % 9;
            int t0 = a() % 65;
            int t1 = b() % 65;
            boolean badArgs = kind() == 1 ? n > 7 : kind() == 2 && (t0 < 1 || t0 > 63 || t1 < 1 || t1 > 63);
            long[] split = switch (kind()) {
                case 0 -> null;
                case 1 -> new long[] {1L << (32 - n), 1L << (32 - n), n > 0 ? 1 : 0};
                default -> badArgs ? null : new long[] {1L << (64 - t0), -(1L << (64 - t1)), 1};
            };
            boolean oneToOne = d.format() == null;
            dev.vcmm.property.graph.GraphModel.MAssoc[] slots = m.slots.get(d);
            boolean active = slots[0] != null || slots[1] != null;
            long[] before = GraphModel.SPLITS.get(d);
            boolean wouldNotFit = false;
            if (!badArgs && !oneToOne) {
                set(d, split);
                for (dev.vcmm.property.graph.GraphModel.MAssoc as : m.assocs) {
                    wouldNotFit |= as.device == d && !GraphModel.reachable(d, as.vcm, as.mode);
                }
                set(d, before);
            }
            if (w.expect().refuse(badArgs || (!active && (oneToOne || wouldNotFit)), IllegalArgumentException.class)
                .refuse(!badArgs && active, dev.vcmm.VcmmBusyException.class)
                .run(() -> d.setSplit(kind() == 0 ? dev.vcmm.Split.TOP_BIT
                    : kind() == 1 ? dev.vcmm.Split.ttbcr(n) : dev.vcmm.Split.tcr(t0, t1)))) {
                set(d, split);
            }
        }

        private static void set(dev.vcmm.Device d, long[] split) {
            if (split == null) {
                GraphModel.SPLITS.remove(d);
            } else {
                GraphModel.SPLITS.put(d, split);
            }
        }
    }

    /** {@code Association.setMode} ({@code vcm_set_assoc_attr} with USE_LOW / USE_HIGH). */
    record SetMode(int assoc, dev.vcmm.AssociationMode mode) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new SetMode(a[0], GraphShape.MODES[a[1] % GraphShape.MODES.length]));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            dev.vcmm.property.graph.GraphModel.MAssoc as = pick(m.assocs, m.deadAssocs, assoc());
            if (as == null) {
                return;
            }
            boolean removed = m.deadAssocs.contains(as);
            boolean active = !removed && as.active;
            boolean bad = !removed && !active && ((as.device.format() == null && mode() != dev.vcmm.AssociationMode.WHOLE)
                || !GraphModel.reachable(as.device, as.vcm, mode()));
            if (w.expect().refuse(removed, IllegalStateException.class).refuse(active, dev.vcmm.VcmmBusyException.class)
                .refuse(bad, IllegalArgumentException.class).run(() -> as.a.setMode(mode()))) {
                as.mode = mode();
                assertEquals(mode(), as.a.mode(), w.where());
            }
        }
    }

    /** {@code PrioritisedMemory} ({@code memtype_t}): SRAM first, then DDR; the whole allocation from one pool. */
    record PrioritisedAlloc(long bytes, ChunkPolicy policy) implements Op {
        static final Gen<Op> GEN = ints(2).map(a -> new PrioritisedAlloc((a[0] < 5000 ? 1 + a[0] % 300 : Op.pages(a[0])) * PAGE,
            POLICIES[a[1] % POLICIES.length]));

        @Override
        public void apply(GraphRun w) {
            MemoryType sram = w.vcmm.memoryType("sram");
            MemoryType ddr = w.vcmm.memoryType("ddr");
            boolean sramNever = never(sram);
            boolean ddrNever = never(ddr);
            GraphRun.Expect e = w.expect().refuse(sramNever && ddrNever, IllegalArgumentException.class)
                .refuse(!(sramNever && ddrNever), VcmmOutOfMemoryException.class);
            e.maySucceed = !(sramNever && ddrNever);
            PhysMem pm = e.call(() -> dev.vcmm.PrioritisedMemory.of("fast", sram, ddr).physAlloc(bytes(), policy()));
            if (pm == null) {
                return;
            }
            assertTrue(pm.memoryType() == sram || pm.memoryType() == ddr, w.where());
            assertTrue(!sramNever || pm.memoryType() == ddr, () -> "SRAM can never hold it, yet " + pm + w.where());
            w.model.pms.add(new MPm(pm));
            w.handedOff(pm);
        }

        /** @return whether {@code m} can never hold the allocation (as physAlloc refuses with IllegalArgumentException) */
        private boolean never(MemoryType m) {
            long max = PAGE << m.maxOrder();
            long unit = 0;
            for (long c : policy().chunkSizes()) {
                unit = c <= max ? c : unit;
            }
            return bytes() > m.size() || unit == 0 || ((bytes() + unit - 1) & -unit) > m.size();
        }
    }

    /** @return whether a format of {@code v}'s devices cannot map every address of it (a back may then be refused) */
    static boolean partial(MVcm v) {
        for (PageTableFormat f : v.formats()) {
            if (!f.isValidVa(v.start) || !f.isValidVa(v.start + v.length - 1)) {
                return true;
            }
        }
        return false;
    }
}
