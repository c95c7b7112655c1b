package dev.vcmm.example.consumer;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Uses vcmm as a library would: a manager over 256 MiB of simulated DDR, a device behind an
 * {@code arm64-4k} IOMMU, an address space for it, a 2 MiB + 64 KiB buffer reserved there and backed
 * by physical chunks, then a DMA write and a DMA read through the device's page tables. It prints each
 * step, checks that the bytes arrived where the page tables say, and exits with status 1 if anything
 * is not as it should be (the wrong backend, native access missing or granted too widely, wrong
 * bytes).
 *
 * <p>Run it on the module path with native access for vcmm's FFM module only:
 * <pre>
 * java --module-path target/modules --enable-native-access=dev.vcmm.ffm \
 *      --module dev.vcmm.example.consumer/dev.vcmm.example.consumer.Main
 * </pre>
 *
 * <p><b>Thread-safety:</b> a program with one thread; nothing here is shared.
 */
public final class Main {

    private static final long KIB = 1L << 10;
    private static final long MIB = 1L << 20;

    private Main() {
    }

    /**
     * Runs the example.
     *
     * @param args ignored
     */
    public static void main(String[] args) {
        // before anything calls a restricted method: the JDK grants access to a module it warned about
        Module ffm = ModuleLayer.boot().findModule("dev.vcmm.ffm").orElse(null);
        Module core = Vcmm.class.getModule();
        Module self = Main.class.getModule();
        check(ffm != null, "module dev.vcmm.ffm is not resolved: put vcmm-ffm-backend on the module path");
        System.out.printf("modules: %s, %s (bound as a service provider), %s%n", core.getName(), ffm.getName(), self.getName());
        System.out.printf("native access: %s=%b, %s=%b, %s=%b%n", ffm.getName(), ffm.isNativeAccessEnabled(),
                core.getName(), core.isNativeAccessEnabled(), self.getName(), self.isNativeAccessEnabled());
        check("dev.vcmm.core".equals(core.getName()), "vcmm's core is not on the module path as a named module");
        check(ffm.isNativeAccessEnabled(), "run with --enable-native-access=dev.vcmm.ffm");
        check(!core.isNativeAccessEnabled() && !self.isNativeAccessEnabled(),
                "native access is granted more widely than to dev.vcmm.ffm");

        try (Vcmm vcmm = Vcmm.builder()
                .memoryType(MemoryType.builder("ddr").base(0x8000_0000L).size(256 * MIB))
                .build()) {
            MemoryType ddr = vcmm.memoryType("ddr");
            Module memoryModule = ddr.memory().getClass().getModule();
            System.out.printf("memory type %s: %d MiB at 0x%x, backend %s, memory from module %s%n",
                    ddr.name(), ddr.size() / MIB, ddr.base(), ddr.backendName(), memoryModule.getName());
            check("ffm".equals(ddr.backendName()) && memoryModule == ffm, "the ffm backend was not chosen");

            Device dsp = vcmm.device("dsp", Arm64Lpae4kFormat.INSTANCE);
            Vcm space = vcmm.createVcm(0x1000_0000L, 64 * MIB);
            vcmm.assoc(space, dsp).activate();
            System.out.printf("device %s (%s) attached to a VCM of %d MiB at 0x%x%n",
                    dsp.name(), dsp.format(), space.length() / MIB, space.start());

            PhysMem buffer = vcmm.physAlloc("ddr", 2 * MIB + 64 * KIB, ChunkPolicy.VCMM);
            System.out.printf("physAlloc %d KiB under %s: %d chunks %s%n",
                    buffer.length() / KIB, buffer.policy(), buffer.chunkCount(), buffer.chunks());
            Reservation r = space.reserve(buffer.length(), ReservationAttributes.RW, MIB).back(buffer);
            System.out.printf("reserved and backed 0x%x..0x%x%n", r.address(), r.address() + r.length());

            long offset = 2 * MIB + 100; // in the last chunk
            byte[] message = "hello from a vcmm library user".getBytes(StandardCharsets.US_ASCII);
            dsp.write(r.address() + offset, message, 0, message.length);
            byte[] read = new byte[message.length];
            dsp.read(r.address() + offset, read, 0, read.length);
            long pa = buffer.physicalAddress(offset);
            byte[] atPa = new byte[message.length];
            ddr.memory().copyOut(pa, atPa, 0, atPa.length);
            System.out.printf("DMA write of %d bytes at IOVA 0x%x landed at PA 0x%x; DMA read back: \"%s\"%n",
                    message.length, r.address() + offset, pa, new String(read, StandardCharsets.US_ASCII));
            check(Arrays.equals(message, read), "the DMA read returned other bytes than were written");
            check(Arrays.equals(message, atPa), "the bytes are not at the physical address the chunks say");

            r.unback().unreserve();
            buffer.free();
            check(buffer.isFreed() && r.isReleased(), "the buffer or the reservation is still live");
            System.out.printf("unbacked, unreserved and freed; ddr now: %d KiB allocated, %d KiB in thread caches, %d KiB free%n",
                    ddr.stats().allocatedBytes() / KIB, ddr.stats().cachedBytes() / KIB, ddr.stats().freeBytes() / KIB);
        }
        System.out.println("consumer: OK");
    }

    private static void check(boolean condition, String failure) {
        if (!condition) {
            System.err.println("consumer: FAILED: " + failure);
            System.exit(1);
        }
    }
}
