package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.WalkResult;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The README's graph quick start, kept compiling and true: two formats, one VCM, DMA, then unback. */
class ReadmeGraphExampleTest {

    @Test
    void shouldRunTheGraphQuickStart() {
        try (Vcmm vcmm = Vcmm.builder()
                .memoryType(MemoryType.builder("ddr").base(0x8000_0000L).size(1L << 30))
                .memoryType(MemoryType.builder("pt").base(0x1000_0000L).size(16 << 20))
                .pageTableMemory("pt")
                .build()) {
            Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
            Device cam = vcmm.device("camera", Armv7ShortFormat.INSTANCE);
            Vcm vcm = vcmm.createVcm(0x1000_0000L, 256L << 20);
            vcmm.assoc(vcm, gpu).activate();
            vcmm.assoc(vcm, cam).activate();

            Reservation frame = vcm.reserve(8 << 20, ReservationAttributes.RW, 1 << 20);
            PhysMem pm = vcmm.physAlloc("ddr", 8 << 20, ChunkPolicy.VCMM);
            frame.back(pm);
            gpu.write(frame.address(), new byte[] {42}, 0, 1);

            // both formats' tables name the same byte of pm, and the camera reads what the GPU wrote
            long pa = pm.physicalAddress(0);
            assertEquals(pa, assertInstanceOf(WalkResult.Translation.class, gpu.translate(frame.address())).pa());
            assertEquals(pa, assertInstanceOf(WalkResult.Translation.class, cam.translate(frame.address())).pa());
            byte[] seen = new byte[1];
            cam.read(frame.address(), seen, 0, 1);
            assertArrayEquals(new byte[] {42}, seen);

            frame.unback();
            assertThrows(DeviceFaultException.class, () -> gpu.read(frame.address(), seen, 0, 1));
            frame.unreserve();
            pm.free();
        }
    }
}
