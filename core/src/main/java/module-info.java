/**
 * vcmm's API and domain: memory types, physical allocations, VCMs, reservations and devices
 * ({@code dev.vcmm}), the page-table formats, mapper and walker ({@code dev.vcmm.pagetable}), the
 * service-provider interfaces through which it reaches memory ({@code dev.vcmm.spi}), the address-space
 * allocator ({@code dev.vcmm.space}) and a plain heap memory ({@code dev.vcmm.heap}).
 *
 * <p>It needs nothing but {@code java.base} and {@code jdk.jfr} (a device fault's Flight Recorder event), and no
 * native access. Memory comes from a
 * {@link dev.vcmm.spi.MemoryBackend} and host mappings from a {@link dev.vcmm.spi.HostMapper}, both found
 * with {@link java.util.ServiceLoader}: put the {@code dev.vcmm.ffm} module (artifact
 * {@code dev.vcmm:vcmm-ffm-backend}) on the module path, and service binding resolves it even if no module
 * {@code requires} it.
 *
 * @uses dev.vcmm.spi.MemoryBackend the memory of each memory type; the highest priority wins
 * @uses dev.vcmm.spi.HostMapper real host mappings of the memory, for HOST VCMs
 */
module dev.vcmm.core {
    requires jdk.jfr; // the device-fault event (DeviceFaultEvent), made on the fault path only

    exports dev.vcmm;
    exports dev.vcmm.heap;
    exports dev.vcmm.pagetable;
    exports dev.vcmm.space;
    exports dev.vcmm.spi;

    uses dev.vcmm.spi.HostMapper;
    uses dev.vcmm.spi.MemoryBackend;
}
