package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.testing.TestGraphs;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The device-fault JFR event ({@code dev.vcmm.DeviceFault}): recorded, dumped and read back with its fields. */
class DeviceFaultEventTest {

    static final long KIB = 1L << 10;
    static final long MIB = 1L << 20;

    @TempDir
    Path dir;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(64 * MIB).pageTables(16 * MIB).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    private static List<RecordedEvent> faults(List<RecordedEvent> all) {
        return all.stream().filter(e -> e.getEventType().getName().equals("dev.vcmm.DeviceFault")).toList();
    }

    @Test
    void shouldRecordEachFaultWithWhereWhyAndWhatWasDone() throws Exception {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Reservation lazy = vcm.reserve(4 * KIB, ReservationAttributes.RW);
        Reservation ro = vcm.reserve(4 * KIB, ReservationAttributes.RO).back(vcmm.physAlloc("ddr", 4 * KIB, ChunkPolicy.PAGES_4K));
        Path file = dir.resolve("faults.jfr");
        try (Recording r = new Recording()) {
            r.enable("dev.vcmm.DeviceFault");
            r.start();
            byte[] b = new byte[16];
            // 1. no handler: fails
            assertThrows(DeviceFaultException.class, () -> gpu.read(lazy.address(), b, 0, 16));
            // 2. a handler backs the page on demand and retries: succeeds
            gpu.hook(f -> {
                lazy.back(vcmm.physAlloc("ddr", 4 * KIB, ChunkPolicy.PAGES_4K));
                return FaultAction.RETRY;
            });
            gpu.read(lazy.address() + 8, b, 0, 8);
            // 3. a write to a read-only page, the handler terminates
            gpu.hook(f -> FaultAction.TERMINATE);
            assertThrows(DeviceFaultException.class, () -> gpu.write(ro.address(), b, 0, 4));
            r.stop();
            r.dump(file);
        }
        List<RecordedEvent> events = faults(RecordingFile.readAllEvents(file));
        assertEquals(3, events.size(), events::toString);
        RecordedEvent none = events.get(0);
        assertEquals("gpu", none.getString("device"));
        assertEquals(vcm.name(), none.getString("vcm"));
        assertEquals(0, none.getInt("pasid"));
        assertEquals(lazy.address(), none.getLong("address"));
        assertEquals("READ", none.getString("access"));
        assertEquals("TRANSLATION", none.getString("reason"));
        assertEquals("fail: no fault handler", none.getString("action"));
        assertTrue(none.getStackTrace().getFrames().stream().anyMatch(f -> f.getMethod().getName().equals("read")));
        RecordedEvent retried = events.get(1);
        assertEquals(lazy.address() + 8, retried.getLong("address"));
        assertEquals("retry", retried.getString("action"));
        RecordedEvent terminated = events.get(2);
        assertEquals(ro.address(), terminated.getLong("address"));
        assertEquals("WRITE", terminated.getString("access"));
        assertEquals("PERMISSION", terminated.getString("reason"));
        assertEquals("terminate", terminated.getString("action"));
        assertEquals(List.of("vcmm", "Device"), terminated.getEventType().getCategoryNames());
        // the device's counters agree: three faults, one retried, two failed
        DeviceStats s = gpu.stats();
        assertEquals(3, s.faults());
        assertEquals(1, s.retries());
        assertEquals(2, s.failed());
    }

    @Test
    void shouldRecordNothingWhenTheEventIsNotEnabled() throws Exception {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm vcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
        Path file = dir.resolve("none.jfr");
        try (Recording r = new Recording()) {
            r.disable("dev.vcmm.DeviceFault");
            r.start();
            assertThrows(DeviceFaultException.class, () -> gpu.read(0x4000_0000L, new byte[4], 0, 4));
            r.stop();
            r.dump(file);
        }
        assertEquals(List.of(), faults(RecordingFile.readAllEvents(file)));
        assertEquals(1, gpu.stats().faults());
    }
}
