package dev.vcmm.property.graph;

import dev.vcmm.PhysMem;
import dev.vcmm.Vcmm;
import dev.vcmm.property.graph.BindingOps.Batch;
import dev.vcmm.property.graph.BindingOps.Remap;
import dev.vcmm.property.graph.BindingOps.SubUnback;
import dev.vcmm.property.graph.ApiOps.BoundReserve;
import dev.vcmm.property.graph.ApiOps.CloseBinding;
import dev.vcmm.property.graph.ApiOps.CreateBound;
import dev.vcmm.property.graph.ApiOps.FreeBound;
import dev.vcmm.property.graph.ApiOps.MakeBinding;
import dev.vcmm.property.graph.ApiOps.MapBinding;
import dev.vcmm.property.graph.ApiOps.PhysAllocAt;
import dev.vcmm.property.graph.ApiOps.PrioritisedAlloc;
import dev.vcmm.property.graph.ApiOps.Ref;
import dev.vcmm.property.graph.ApiOps.ResCopy;
import dev.vcmm.property.graph.ApiOps.SetAttributes;
import dev.vcmm.property.graph.ApiOps.SetMode;
import dev.vcmm.property.graph.ApiOps.SetSplit;
import dev.vcmm.property.graph.ClientOps.CloseClient;
import dev.vcmm.property.graph.ClientOps.OpenClient;
import dev.vcmm.property.graph.DeviceOps.Buffer;
import dev.vcmm.property.graph.DeviceOps.Crash;
import dev.vcmm.property.graph.DeviceOps.Dma;
import dev.vcmm.property.graph.DeviceOps.Hook;
import dev.vcmm.property.graph.DeviceOps.Reset;
import dev.vcmm.property.graph.MemoryOps.Back;
import dev.vcmm.property.graph.MemoryOps.PhysAlloc;
import dev.vcmm.property.graph.MemoryOps.PhysFree;
import dev.vcmm.property.graph.MemoryOps.Unback;
import dev.vcmm.property.graph.PasidOps.AssocPasid;
import dev.vcmm.property.graph.PasidOps.DmaPasid;
import dev.vcmm.property.graph.ReservationOps.Reserve;
import dev.vcmm.property.graph.ReservationOps.ReserveAt;
import dev.vcmm.property.graph.ReservationOps.Unreserve;
import dev.vcmm.property.graph.VcmOps.Activate;
import dev.vcmm.property.graph.VcmOps.Assoc;
import dev.vcmm.property.graph.VcmOps.CloneVcm;
import dev.vcmm.property.graph.VcmOps.CreateCpuVcm;
import dev.vcmm.property.graph.VcmOps.CreateOneToOneVcm;
import dev.vcmm.property.graph.VcmOps.CreateVcm;
import dev.vcmm.property.graph.VcmOps.Deactivate;
import dev.vcmm.property.graph.VcmOps.Deassoc;
import dev.vcmm.property.graph.VcmOps.FreeVcm;
import org.junit.jupiter.api.Test;
import org.quicktheories.api.Pair;
import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

import static org.quicktheories.QuickTheory.qt;
import static org.quicktheories.generators.SourceDSL.lists;

/**
 * Model-based properties of the whole VCMM graph API ({@link Vcmm}): generated sequences of {@link Op}s are run on
 * a fresh VCMM ({@link GraphShape}) and on the {@link GraphModel}; before each operation the model predicts the
 * exceptions the call may throw (none: it must succeed), a refused call must throw one of them and change nothing,
 * and after EVERY step {@link GraphChecks} and {@link DmaChecks} compare the system with the model:
 * <ul>
 *   <li>every device translates sampled addresses exactly as the model says, secure memory included, and refuses
 *   writes to read-only reservations; VCM-to-VCM translation agrees;</li>
 *   <li>{@link Vcmm#reservationsOf}, {@link PhysMem#backingCount()} and {@link Vcmm#whoMaps} agree, and so do the
 *   handles (VCMs, reservations, backing, formats, device slots, association state);</li>
 *   <li>DMA (the ops' own, 1-2 reads per device per step, and a probe of every address whose mapping just went) moves
 *   the bytes of a byte model of physical memory and faults where and why the model says; fault handler calls and
 *   every device's counters and crashed state agree;</li>
 *   <li>each data memory type's allocated bytes equal its live allocations' lengths, no physical page is owned twice,
 *   and the page-table memory holds exactly what the tables hold.</li>
 * </ul>
 * At the end everything is torn down and every memory type, page tables included, has 0 allocated bytes, and every
 * byte of every chunk that ever backed a reservation (of all data memory, one sequence in 30) equals the model.
 *
 * <p>One property runs the full mix of operations; four more weight one family each (with what that family needs
 * to have something to work on), so that a failure found there points at its family first. QuickTheories shrinks a
 * failing sequence to a short one.
 *
 * <p><b>Replay:</b> each property prints its seed; rerun with {@code -Dvcmm.seed=N} (and
 * {@code -Dtest='VcmmProperties#name'}). The mixed property draws its sequences as it always has, so an old seed
 * replays the same sequence. 300 sequences for the mixed property and 100 for each focused one by default, 100x with
 * {@code -Dvcmm.long=true}.
 */
class VcmmProperties {

    static boolean longRun() {
        return Boolean.getBoolean("vcmm.long");
    }

    @Test
    void shouldAgreeWithTheModelAfterEveryStep() {
        check("shouldAgreeWithTheModelAfterEveryStep", 300, List.of(
            Pair.of(3, CreateVcm.GEN), Pair.of(2, CreateOneToOneVcm.GEN), Pair.of(1, CreateCpuVcm.GEN), Pair.of(1, CloneVcm.GEN),
            Pair.of(3, FreeVcm.GEN), Pair.of(7, Assoc.GEN), Pair.of(6, Activate.GEN), Pair.of(3, Deactivate.GEN), Pair.of(3, Deassoc.GEN),
            Pair.of(8, Reserve.GEN), Pair.of(5, ReserveAt.GEN), Pair.of(7, PhysAlloc.GEN), Pair.of(3, PhysFree.GEN),
            Pair.of(16, Back.GEN), Pair.of(5, Unback.GEN), Pair.of(4, Unreserve.GEN),
            Pair.of(2, OpenClient.GEN), Pair.of(2, CloseClient.GEN), Pair.of(24, Dma.GEN), Pair.of(5, Hook.GEN), Pair.of(2, Crash.GEN),
            Pair.of(3, Reset.GEN), Pair.of(10, Buffer.GEN)));
    }

    /** VCMs and associations: create (every kind), clone, free; assoc in every mode, activate, deactivate, deassoc. */
    @Test
    void shouldManageVcmsAndAssociationsAsTheModel() {
        check("shouldManageVcmsAndAssociationsAsTheModel", 100, List.of(
            Pair.of(4, CreateVcm.GEN), Pair.of(3, CreateOneToOneVcm.GEN), Pair.of(2, CreateCpuVcm.GEN), Pair.of(3, CloneVcm.GEN),
            Pair.of(5, FreeVcm.GEN), Pair.of(8, Assoc.GEN), Pair.of(7, Activate.GEN), Pair.of(4, Deactivate.GEN), Pair.of(4, Deassoc.GEN),
            Pair.of(3, Reserve.GEN), Pair.of(2, PhysAlloc.GEN), Pair.of(4, Back.GEN), Pair.of(1, Crash.GEN), Pair.of(1, Reset.GEN)));
    }

    /** Reservations and backings: reserve, reserveAt, unreserve; physAlloc, physFree, back, unback. */
    @Test
    void shouldReserveAndBackAsTheModel() {
        check("shouldReserveAndBackAsTheModel", 100, List.of(
            Pair.of(2, CreateVcm.GEN), Pair.of(2, CreateOneToOneVcm.GEN), Pair.of(1, CloneVcm.GEN), Pair.of(4, Assoc.GEN),
            Pair.of(4, Activate.GEN), Pair.of(8, Reserve.GEN), Pair.of(6, ReserveAt.GEN), Pair.of(5, Unreserve.GEN),
            Pair.of(7, PhysAlloc.GEN), Pair.of(4, PhysFree.GEN), Pair.of(16, Back.GEN), Pair.of(6, Unback.GEN)));
    }

    /** Devices at work: DMA, fault handlers, crash, reset, one-step buffers, and unmapping under them. */
    @Test
    void shouldMoveBytesAndFaultAsTheModel() {
        check("shouldMoveBytesAndFaultAsTheModel", 100, List.of(
            Pair.of(1, CreateVcm.GEN), Pair.of(1, CreateCpuVcm.GEN), Pair.of(3, Assoc.GEN), Pair.of(3, Activate.GEN),
            Pair.of(1, Deactivate.GEN), Pair.of(2, Reserve.GEN), Pair.of(2, PhysAlloc.GEN), Pair.of(4, Back.GEN), Pair.of(3, Unback.GEN),
            Pair.of(1, Unreserve.GEN), Pair.of(24, Dma.GEN), Pair.of(6, Hook.GEN), Pair.of(3, Crash.GEN), Pair.of(4, Reset.GEN),
            Pair.of(12, Buffer.GEN)));
    }

    /** Clients: creations through them (a third of each kind), close, close again; orphans freed by their last use. */
    @Test
    void shouldReleaseWhatAClosedClientOwnedAsTheModel() {
        check("shouldReleaseWhatAClosedClientOwnedAsTheModel", 100, List.of(
            Pair.of(4, OpenClient.GEN), Pair.of(4, CloseClient.GEN), Pair.of(3, CreateVcm.GEN), Pair.of(1, CreateOneToOneVcm.GEN),
            Pair.of(2, FreeVcm.GEN), Pair.of(5, Assoc.GEN), Pair.of(4, Activate.GEN), Pair.of(2, Deassoc.GEN), Pair.of(5, Reserve.GEN),
            Pair.of(2, ReserveAt.GEN), Pair.of(2, Unreserve.GEN), Pair.of(5, PhysAlloc.GEN), Pair.of(10, Back.GEN), Pair.of(3, Unback.GEN),
            Pair.of(6, Buffer.GEN), Pair.of(4, Dma.GEN)));
    }

    /**
     * PASIDs, sub-range unbacks, remaps and batches: devices associate with VCMs under PASIDs 1-3 beside their default
     * association and DMA through them; parts of backed reservations are unbacked and bound to other allocations (or
     * other offsets of their own); batches of unbacks, sub-range ops and deactivations commit. After every step a
     * device reaches exactly what the model maps for each PASID (an unbound page faults), whoMaps and the backing counts
     * follow the bindings, and an allocation a batch unbound is held until the commit and released by it.
     */
    @Test
    void shouldBindPasidsSubRangesAndBatchesAsTheModel() {
        check("shouldBindPasidsSubRangesAndBatchesAsTheModel", 100, List.of(
            Pair.of(2, CreateVcm.GEN), Pair.of(1, CreateCpuVcm.GEN), Pair.of(3, Assoc.GEN), Pair.of(5, AssocPasid.GEN),
            Pair.of(7, Activate.GEN), Pair.of(2, Deactivate.GEN), Pair.of(1, Deassoc.GEN), Pair.of(8, Reserve.GEN),
            Pair.of(10, PhysAlloc.GEN), Pair.of(1, PhysFree.GEN), Pair.of(20, Back.GEN), Pair.of(2, Unback.GEN),
            Pair.of(8, SubUnback.GEN), Pair.of(10, Remap.GEN), Pair.of(4, Batch.GEN), Pair.of(1, OpenClient.GEN),
            Pair.of(1, CloseClient.GEN), Pair.of(6, Dma.GEN), Pair.of(8, DmaPasid.GEN), Pair.of(1, Hook.GEN),
            Pair.of(1, Crash.GEN), Pair.of(1, Reset.GEN)));
    }

    /**
     * The rest of the RFC's interface among the usual operations: attribute changes under DMA, res copy, wrapped
     * physical ranges, bounds and their reservations, one-call bindings, reference-counted reservations, a device's
     * split and an association's mode changed between activations, allocations from prioritised pools.
     */
    @Test
    void shouldKeepTheRestOfTheInterfaceAsTheModel() {
        check("shouldKeepTheRestOfTheInterfaceAsTheModel", 100, List.of(
            Pair.of(2, CreateVcm.GEN), Pair.of(1, CreateOneToOneVcm.GEN), Pair.of(1, CloneVcm.GEN), Pair.of(2, FreeVcm.GEN),
            Pair.of(4, Assoc.GEN), Pair.of(4, Activate.GEN), Pair.of(1, Deassoc.GEN), Pair.of(4, Reserve.GEN), Pair.of(2, Unreserve.GEN),
            Pair.of(4, PhysAlloc.GEN), Pair.of(2, PhysFree.GEN), Pair.of(6, Back.GEN), Pair.of(2, Unback.GEN),
            Pair.of(1, OpenClient.GEN), Pair.of(1, CloseClient.GEN), Pair.of(8, Dma.GEN), Pair.of(3, Buffer.GEN),
            Pair.of(6, SetAttributes.GEN), Pair.of(5, ResCopy.GEN), Pair.of(3, PhysAllocAt.GEN), Pair.of(3, CreateBound.GEN),
            Pair.of(5, BoundReserve.GEN), Pair.of(2, FreeBound.GEN), Pair.of(4, MakeBinding.GEN), Pair.of(3, MapBinding.GEN),
            Pair.of(3, CloseBinding.GEN), Pair.of(3, Ref.GEN), Pair.of(3, SetSplit.GEN), Pair.of(4, SetMode.GEN), Pair.of(4, Deactivate.GEN),
            Pair.of(2, PrioritisedAlloc.GEN)));
    }

    /**
     * Runs {@code examples} sequences (100x in long mode) of 1-60 operations (1-120 in long mode) drawn with these
     * weights, each on a fresh VCMM and model, shrinking a failure; prints the seed and what the runs exercised.
     */
    private static void check(String name, int examples, List<Pair<Integer, Gen<Op>>> weights) {
        long seed = Long.getLong("vcmm.seed", System.nanoTime());
        int n = longRun() ? examples * 100 : examples;
        System.out.printf("VcmmProperties.%s seed=%d examples=%d (replay: -Dvcmm.seed=%d)%n", name, seed, n, seed);
        Map<String, Integer> stats = new ConcurrentHashMap<>();
        Gen<List<Op>> sequences = lists().of(Generate.frequency(weights)).ofSizeBetween(1, longRun() ? 120 : 60);
        qt().withFixedSeed(seed).withExamples(n).withShrinkCycles(100)
            .forAll(sequences)
            .checkAssert(ops -> GraphRun.run(ops, stats));
        System.out.println("VcmmProperties." + name + " outcomes: " + new TreeMap<>(stats));
    }
}
