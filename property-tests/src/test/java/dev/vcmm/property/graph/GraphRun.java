package dev.vcmm.property.graph;

import dev.vcmm.Client;
import dev.vcmm.Device;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.property.graph.DmaChecks.ModelHandler;
import dev.vcmm.property.graph.GraphModel.MAssoc;
import dev.vcmm.property.graph.GraphModel.MClient;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.Function;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * One run of one sequence: a fresh VCMM of {@link GraphShape}, the {@link GraphModel}, the steps, the
 * {@link GraphChecks} after each, and the teardown. Holds what the operations share: the expected outcome of a call
 * ({@link Expect}), the trace a failure prints, the owner of a creation, and the transitions that touch both the
 * system and the model (activate, crash, unback of an orphan's last backing, zero on handoff).
 *
 * <p>The run's own random choices (the addresses the checks sample, the bytes DMA writes) come from a {@link Random}
 * seeded by the text of the sequence, so a replayed seed samples the same addresses. Not thread-safe.
 */
final class GraphRun {

    final List<Op> ops;
    final Random rnd;
    final Map<String, Integer> stats;
    final List<String> trace = new ArrayList<>();
    final Vcmm vcmm;
    final List<Device> devices = new ArrayList<>();
    final Device cpu;
    final GraphModel model;
    final Map<Device, ModelHandler> handlers = new IdentityHashMap<>();
    /** Device addresses whose mapping just went (unback, unreserve, deactivate, crash, client close): probed next check. */
    final List<Long> recentlyUnmapped = new ArrayList<>();
    final GraphChecks checks;
    final DmaChecks dma;

    private GraphRun(List<Op> ops, Map<String, Integer> stats, Vcmm vcmm) {
        this.ops = ops;
        this.rnd = new Random(ops.toString().hashCode());
        this.stats = stats;
        this.vcmm = vcmm;
        for (String name : GraphShape.DEVICES) {
            devices.add(vcmm.device(name));
        }
        this.cpu = vcmm.device(GraphShape.CPU);
        this.model = new GraphModel(devices);
        this.checks = new GraphChecks(this);
        this.dma = new DmaChecks(this);
    }

    /**
     * Runs {@code ops} on a fresh VCMM and the model, checking after every step, then tears everything down and checks
     * that every memory type, page tables included, has 0 allocated bytes.
     *
     * @param stats outcome counts, merged into (e.g. {@code Back ok}, {@code Back IllegalArgumentException})
     */
    static void run(List<Op> ops, Map<String, Integer> stats) {
        try (Vcmm vcmm = GraphShape.build()) {
            new GraphRun(ops, stats, vcmm).steps();
        }
    }

    private void steps() {
        for (Op op : ops) {
            trace.add(op.toString());
            op.apply(this);
            checks.afterStep();
        }
        trace.add("teardown");
        teardown();
        checks.afterStep();
        checks.checkMemory(rnd.nextInt(30) == 0);
        for (MemoryType m : vcmm.memoryTypes()) {
            assertEquals(0, m.stats().allocatedBytes(), () -> m.name() + " has allocated bytes after teardown: " + m.stats() + where());
        }
    }

    /** Unbacks, unreserves, deactivates, deassociates and frees what is left; half the clients are closed first. */
    private void teardown() {
        GraphModel m = model;
        for (MClient c : List.copyOf(m.clients)) {
            if (rnd.nextBoolean()) {
                ClientOps.release(this, c);
            }
        }
        for (MRes r : List.copyOf(m.reservations)) {
            if (r.pm != null) {
                r.r.unback();
                unbackInModel(r);
            }
            while (!r.r.isReleased()) {
                r.r.unreserve(); // every holder's reference
            }
            m.reservations.remove(r);
            r.vcm.res.remove(r.address);
        }
        for (GraphModel.MBound b : List.copyOf(m.bounds)) {
            b.b.free();
            m.bounds.remove(b);
            b.vcm.bounds.remove(b);
        }
        for (MAssoc a : List.copyOf(m.assocs)) {
            a.a.deactivate();
            m.deactivateInModel(a);
            a.a.deassoc();
            m.assocs.remove(a);
            a.vcm.assocs.remove(a);
        }
        for (MVcm v : List.copyOf(m.vcms)) {
            if (v.orphan) { // the VCMM freed it when its last reservation or association went
                assertTrue(v.vcm.isFreed(), () -> "orphan " + v.vcm + " not freed once empty" + where());
            } else {
                v.vcm.free();
            }
            m.vcms.remove(v);
        }
        for (MPm p : List.copyOf(m.pms)) {
            p.pm.free();
            m.pms.remove(p);
        }
        for (MClient c : List.copyOf(m.clients)) {
            ClientOps.release(this, c); // owns nothing live any more
        }
    }

    // ---------------------------------------------------------------------------------------------
    // the trace and the outcome counts

    /** @return the last steps, for a failure message */
    String where() {
        return "\n  after " + String.join("\n        ", trace.subList(Math.max(0, trace.size() - 12), trace.size()));
    }

    /** Appends to the current step's line of the trace. */
    void note(String s) {
        trace.set(trace.size() - 1, trace.getLast() + s);
    }

    void count(String what) {
        stats.merge(what, 1, Integer::sum);
    }

    // ---------------------------------------------------------------------------------------------
    // expected outcomes

    /** The exceptions a call may throw; empty: it must succeed. {@code maySucceed}: both are fine. */
    final class Expect {
        final Set<Class<? extends RuntimeException>> refusals = new LinkedHashSet<>();
        boolean maySucceed;

        Expect refuse(boolean condition, Class<? extends RuntimeException> type) {
            if (condition) {
                refusals.add(type);
            }
            return this;
        }

        /** @return the result, or null if refused as expected */
        <T> T call(Supplier<T> call) {
            T result;
            try {
                result = call.get();
            } catch (RuntimeException e) {
                for (Class<? extends RuntimeException> c : refusals) {
                    if (c.isInstance(e)) {
                        count(trace.getLast().replaceAll("\\[.*", "") + " " + e.getClass().getSimpleName());
                        note(" -> refused: " + e.getClass().getSimpleName());
                        return null;
                    }
                }
                throw new AssertionError("unexpected " + e + (refusals.isEmpty() ? " (should succeed)" : " (expected one of " + names() + ")")
                    + where(), e);
            }
            if (!refusals.isEmpty() && !maySucceed) {
                fail("should have been refused with one of " + names() + " but returned " + result + where());
            }
            count(trace.getLast().replaceAll("\\[.*", "") + " ok");
            return result;
        }

        /** @return whether it ran (else it was refused as expected) */
        boolean run(Runnable call) {
            return call(() -> {
                call.run();
                return Boolean.TRUE;
            }) != null;
        }

        private List<String> names() {
            return refusals.stream().map(Class::getSimpleName).toList();
        }
    }

    Expect expect() {
        return new Expect();
    }

    // ---------------------------------------------------------------------------------------------
    // clients: created through them when an op's owner says so

    /** @return {@code o % 3 != 0}: null (through the Vcmm), else a client picked by {@code o / 3} */
    MClient owner(int o) {
        return o % 3 != 0 ? null : GraphModel.pick(model.clients, model.closedClients, o / 3);
    }

    /** Calls {@code direct}, or {@code viaClient} with the owner's client (refused by a closed client, nothing else). */
    <T> T create(MClient owner, Expect e, Supplier<T> direct, Function<Client, T> viaClient) {
        if (owner == null) {
            return e.call(direct);
        }
        note(" via " + owner + (owner.closed ? " (closed)" : ""));
        if (owner.closed) {
            return expect().refuse(true, IllegalStateException.class).call(() -> viaClient.apply(owner.client));
        }
        return e.call(() -> viaClient.apply(owner.client));
    }

    /** Adds {@code object} to the live ones, and to what {@code owner} owns if it has one. */
    static <T> void own(MClient owner, Set<T> owned, T object, List<T> live) {
        live.add(object);
        if (owner != null) {
            owned.add(object);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // transitions of the system and the model together

    /** Activates {@code a}, expecting the refusals the model predicts. */
    void activate(MAssoc a) {
        boolean removed = model.deadAssocs.contains(a);
        boolean down = !removed && !a.active && model.crashed.contains(a.device);
        boolean busy = false;
        if (!removed && !a.active && !down) {
            for (int s : a.slots()) {
                busy |= model.slots.get(a.device)[s] != null;
            }
            busy |= a.pasid != 0 && model.pasids.get(a.device).get(a.pasid) != null;
        }
        if (expect().refuse(removed || down, IllegalStateException.class).refuse(busy, VcmmBusyException.class)
            .call(a.a::activate) != null && !a.active) {
            model.activateInModel(a);
        }
    }

    /** The model's side of a crash of {@code d} (the device has crashed): its active associations go down. */
    void crashed(Device d) {
        for (MAssoc a : model.crashInModel(d)) {
            a.vcm.res.values().forEach(this::unmapped);
        }
    }

    /** The model's side of a real unback: an orphan whose last backing this was must have been freed. */
    void unbackInModel(MRes r) {
        freedInModel(model.unbackInModel(r));
    }

    /**
     * The model's side of orphans freed by an unback, sub-range unback or remap: freed now, or, inside an
     * {@link dev.vcmm.InvalidationBatch}, still held (the batch releases them at commit; {@link #committed()} checks).
     */
    void freedInModel(List<MPm> freed) {
        for (MPm m : freed) {
            if (batchFreed != null) {
                assertFalse(m.pm.isFreed(), () -> "orphan " + m.pm + " freed before the batch committed" + where());
                batchFreed.add(m);
            } else {
                assertTrue(m.pm.isFreed(), () -> "the last unback of orphan " + m.pm + " did not free it" + where());
            }
        }
    }

    /** Orphans freed in the model inside the open batch, or {@code null} outside a batch. */
    List<MPm> batchFreed;

    /** After a batch committed: what it released is freed now. */
    void committed() {
        List<MPm> freed = batchFreed;
        batchFreed = null;
        freedInModel(freed);
    }

    /** Notes a device address that just lost its mapping: the next checks DMA there. */
    void unmappedAt(long a) {
        if (recentlyUnmapped.size() < 12) {
            recentlyUnmapped.add(a);
        }
    }

    /** Zero on handoff: the model forgets what the chunks held, and the first bytes read as zero. */
    void handedOff(PhysMem pm) {
        model.handedOffInModel(pm);
        checks.checkPhysical(pm.physicalAddress(0), (int) Math.min(GraphShape.PAGE, pm.length()));
    }

    /** Notes addresses of a reservation that just lost a mapping somewhere: the next checks DMA there. */
    void unmapped(MRes r) {
        if (recentlyUnmapped.size() < 12) {
            recentlyUnmapped.add(r.address);
            recentlyUnmapped.add(r.address + (rnd.nextLong(r.length) & -8));
        }
    }

    /** @return the device an op's {@code i} picks */
    Device device(int i) {
        return devices.get(i % devices.size());
    }
}
