package dev.vcmm.property.graph;

import org.quicktheories.core.Gen;
import org.quicktheories.generators.Generate;

/**
 * One operation of a generated sequence: a record with a readable {@code toString}, applied to the system and the
 * model by {@link #apply}. The records live with their family, each with its generator:
 * <ul>
 *   <li>{@link VcmOps}: createVcm (virtual, one-to-one, CPU), cloneVcm, free; assoc, activate, deactivate, deassoc;</li>
 *   <li>{@link ReservationOps}: reserve, reserveAt, unreserve;</li>
 *   <li>{@link MemoryOps}: physAlloc, physFree, back, unback;</li>
 *   <li>{@link ClientOps}: open and close a client;</li>
 *   <li>{@link DeviceOps}: DMA, hook a fault handler, crash, reset, one-step DMA buffers;</li>
 *   <li>{@link PasidOps}: associate under a PASID, DMA through a PASID;</li>
 *   <li>{@link BindingOps}: sub-range unback, remap, and batches of unbacks, sub-range ops and deactivations.</li>
 *   <li>{@link ApiOps}: set attributes, res copy, wrap a physical range, bounds, one-call bindings, references,
 *   a device's split, an association's mode, prioritised pools.</li>
 * </ul>
 * An operation that needs a live object picks it by index modulo the live count; one pick in ten
 * ({@code pick % 10 == 9}) takes a dead object instead (a freed VCM or allocation, an unreserved reservation, a
 * removed association), when there is one, to exercise use after free.
 */
sealed interface Op permits VcmOps.CreateVcm, VcmOps.CreateOneToOneVcm, VcmOps.CreateCpuVcm, VcmOps.CloneVcm,
    VcmOps.FreeVcm, VcmOps.Assoc, VcmOps.Activate, VcmOps.Deactivate, VcmOps.Deassoc,
    ReservationOps.Reserve, ReservationOps.ReserveAt, ReservationOps.Unreserve,
    MemoryOps.PhysAlloc, MemoryOps.PhysFree, MemoryOps.Back, MemoryOps.Unback,
    ClientOps.OpenClient, ClientOps.CloseClient,
    DeviceOps.Dma, DeviceOps.Hook, DeviceOps.Crash, DeviceOps.Reset, DeviceOps.Buffer,
    PasidOps.AssocPasid, PasidOps.DmaPasid, BindingOps.SubUnback, BindingOps.Remap, BindingOps.Batch,
    ApiOps.SetAttributes, ApiOps.ResCopy, ApiOps.PhysAllocAt, ApiOps.CreateBound, ApiOps.BoundReserve, ApiOps.FreeBound,
    ApiOps.MakeBinding, ApiOps.MapBinding, ApiOps.CloseBinding, ApiOps.Ref, ApiOps.SetSplit, ApiOps.SetMode, ApiOps.PrioritisedAlloc {

    /**
     * Runs the operation on the system and, where it succeeds, on the model; first predicts the exceptions the call
     * may throw (none: it must succeed), and a refused call must throw one of them and change nothing.
     */
    void apply(GraphRun run);

    /** @return {@code n} ints in {@code [0, 9999]}, the raw choices an operation's generator maps to its fields */
    static Gen<int[]> ints(int n) {
        return Generate.intArrays(Generate.constant(n), Generate.range(0, 9999));
    }

    /** @return a length in pages: mostly 1-64, sometimes up to 700, one in 40 16-32 MiB (exhausts memory and small VCMs) */
    static long pages(int v) {
        if (v % 40 == 0) {
            return 4096 + v % 4096;
        }
        return v < 7000 ? 1 + v % 64 : 1 + v % 700;
    }
}
