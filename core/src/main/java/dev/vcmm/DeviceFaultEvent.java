package dev.vcmm;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;
import jdk.jfr.Threshold;

/**
 * The JDK Flight Recorder event of a device fault ({@code dev.vcmm.DeviceFault}): a DMA access whose walk faulted (or
 * whose translation led outside every memory type), with what was done about it. Its duration is the fault's
 * handling: the {@link FaultHandler}'s call, if one ran. Made, begun and ended on the fault path only; the VCM's name
 * is looked up only if the event {@linkplain Event#isEnabled() is enabled}, the other fields are set only if it
 * {@linkplain Event#shouldCommit() should commit}: when nothing records, a fault pays for an allocation that escape
 * analysis may remove and a few reads of a flag, and DMA that does not fault pays nothing.
 *
 * <p>The threshold defaults to 0 ms (every fault); a recording's settings override it, e.g.
 * {@code recording.enable("dev.vcmm.DeviceFault").withThreshold(Duration.ofMillis(1))} to see slow handlers only.
 *
 * <p><b>Thread-safety:</b> an event object belongs to the thread that made it (the DMA's), as JFR requires.
 */
@Name("dev.vcmm.DeviceFault")
@Label("Device Fault")
@Category({"vcmm", "Device"})
@Description("A DMA access faulted: where, why, and what the device did about it")
@Threshold("0 ms")
@StackTrace(true)
final class DeviceFaultEvent extends Event {

    /** The action when the handler retried. */
    static final String RETRY = "retry";
    /** The action when the handler terminated the access. */
    static final String TERMINATE = "terminate";
    /** The action when there was no handler. */
    static final String NO_HANDLER = "fail: no fault handler";
    /** The action when the retries ran out. */
    static final String RETRIES_EXHAUSTED = "fail: still faulting after " + Device.MAX_RETRIES + " retries";
    /** The action when the handler threw (a {@link DeviceFaultException} of its own, or a bug). */
    static final String HANDLER_THREW = "fail: the fault handler threw";
    /** The action when a translation led outside every memory type. */
    static final String NO_MEMORY = "fail: no memory at the translated address";

    @Label("Device")
    String device;

    @Label("VCM")
    @Description("The VCM whose association the device used for the address, or null if none was active")
    String vcm;

    @Label("PASID")
    int pasid;

    @Label("Device Address")
    @Description("The device (input) address that faulted")
    long address;

    @Label("Access")
    String access;

    @Label("Reason")
    @Description("TRANSLATION, PERMISSION, ADDRESS_SIZE or SECURE")
    String reason;

    @Label("Level")
    @Description("The table level at which the walk stopped (-1 before the walk)")
    int level;

    @Label("Stage")
    @Description("0 for a single-stage translation, else the stage of a nested translation that faulted")
    int stage;

    @Label("Action")
    @Description("What the device did: retry, terminate, or fail and why")
    String action;

    /**
     * Ends {@code event} and commits it with the fault's fields if it should.
     *
     * @param event  the event, begun before the fault was handled
     * @param fault  the fault
     * @param pasid  the PASID of the access
     * @param vcm    the VCM's name, or null
     * @param action what was done, one of the constants of this class
     */
    static void end(DeviceFaultEvent event, DeviceFault fault, int pasid, String vcm, String action) {
        event.end();
        if (event.shouldCommit()) {
            event.device = fault.device().name();
            event.vcm = vcm;
            event.pasid = pasid;
            event.address = fault.address();
            event.access = fault.access().name();
            event.reason = fault.reason().name();
            event.level = fault.level();
            event.stage = fault.stage();
            event.action = action;
            event.commit();
        }
    }
}
