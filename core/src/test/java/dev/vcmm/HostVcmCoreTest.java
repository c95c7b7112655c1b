package dev.vcmm;

import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.HostMapping;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The core's side of HOST VCMs, without any real mapping: the refusal where no mapper is available (the core's
 * own test class path has none), and the order of calls into a recording {@link HostMapper}.
 */
class HostVcmCoreTest {

    static final long MIB = 1L << 20;

    static TestGraphs.Builder builder() {
        return TestGraphs.graph().ddr(64 * MIB);
    }

    @Test
    void shouldExplainThatHostVcmsAreUnavailableAndKeepEverythingElseWorking() {
        try (Vcmm vcmm = builder().build()) {
            String why = vcmm.hostUnavailableReason().orElseThrow();
            assertTrue(why.contains("no dev.vcmm.spi.HostMapper"), why);
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> vcmm.createHostVcm(4 * MIB));
            assertTrue(e.getMessage().startsWith("HOST VCMs are unavailable here: no dev.vcmm.spi.HostMapper"), e.getMessage());
            assertEquals(List.of(), vcmm.vcms(), "nothing created");

            Device gpu = vcmm.device("gpu", dev.vcmm.pagetable.Arm64Lpae4kFormat.INSTANCE);
            Vcm vcm = vcmm.createVcm(0x1000_0000L, 16 * MIB);
            vcmm.assoc(vcm, gpu).activate();
            Reservation r = vcm.reserve(MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM));
            gpu.write(r.address(), new byte[] {1, 2, 3}, 0, 3);
        }
    }

    @Test
    void shouldPassOnTheReasonOfAConfiguredMapper() {
        Recording m = new Recording();
        m.unavailable = "no mmap on this toaster";
        try (Vcmm vcmm = builder().hostMapper(m).build()) {
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> vcmm.createHostVcm(4 * MIB));
            assertTrue(e.getMessage().contains("no mmap on this toaster"), e.getMessage());
        }
    }

    @Test
    void shouldReserveMapUnmapAndReleaseInOrder() {
        Recording m = new Recording();
        try (Vcmm vcmm = builder().hostMapper(m).build()) {
            Vcm host = vcmm.createHostVcm(8 * MIB);
            assertEquals(Recording.BASE, host.start());
            PhysMem pm = vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.of(MIB, 64 << 10));
            Reservation r = host.reserve(2 * MIB, ReservationAttributes.RO).back(pm);
            assertEquals(List.of("reserve 0x800000", "map 0x40000000+0x200000 prot=1 runs=" + runs(pm)), m.calls);
            HostMapping mapping = r.hostMapping();
            r.unback();
            assertTrue(mapping.isClosed());
            assertNull(r.hostMapping());
            r.unreserve();
            assertEquals(2, m.calls.size(), "unback closed the mapping; unreserve leaves the range reserved (no access) in the VCM");
            host.free();
            assertEquals("release 0x40000000+0x800000", m.calls.getLast());
        }
    }

    @Test
    void shouldKeepTheBackingWhenAViewCannotEnd() {
        Recording m = new Recording();
        try (Vcmm vcmm = builder().hostMapper(m).build()) {
            Vcm host = vcmm.createHostVcm(8 * MIB);
            PhysMem pm = vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM);
            Reservation r = host.reserve(MIB, ReservationAttributes.RW).back(pm);
            HostMapping mapping = r.hostMapping();
            m.busy = true;
            assertThrows(IllegalStateException.class, r::unback);
            assertTrue(r.isBacked(), "nothing changed");
            assertSame(mapping, r.hostMapping());
            assertEquals(1, pm.backingCount());
            m.busy = false;
            r.unback();
            assertFalse(r.isBacked());
        }
    }

    @Test
    void shouldRefuseToMapWhatTheMapperCannot() {
        Recording m = new Recording();
        try (Vcmm vcmm = builder().hostMapper(m).build()) {
            Vcm host = vcmm.createHostVcm(8 * MIB);
            Reservation r = host.reserve(MIB, ReservationAttributes.RW);
            m.mappable = false;
            assertThrows(IllegalArgumentException.class, () -> r.back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM)));
            assertFalse(r.isBacked());
            assertEquals(1, m.calls.size(), "only the reserve: no map was tried");
        }
    }

    static String runs(PhysMem pm) {
        List<String> out = new ArrayList<>();
        for (PhysMem.Run s : pm.runs()) {
            out.add(Long.toHexString(s.offset()) + ":" + Long.toHexString(s.pa()) + "+" + Long.toHexString(s.length()));
        }
        return out.toString();
    }

    /** A mapper that maps nothing and records what it was asked. */
    static final class Recording implements HostMapper {
        static final long BASE = 0x4000_0000L;
        final List<String> calls = new ArrayList<>();
        String unavailable;
        boolean mappable = true;
        volatile boolean busy;

        @Override
        public String name() {
            return "recording";
        }

        @Override
        public int priority() {
            return 0;
        }

        @Override
        public String unavailableReason() {
            return unavailable;
        }

        @Override
        public long pageSize() {
            return 4096;
        }

        @Override
        public void checkMappable(PhysicalMemory memory) {
            if (!mappable) {
                throw new IllegalArgumentException("not mappable: " + memory);
            }
        }

        @Override
        public synchronized long reserve(long length, long alignment) {
            calls.add("reserve 0x" + Long.toHexString(length));
            return BASE;
        }

        @Override
        public synchronized HostMapping map(long address, long length, int prot, PhysicalMemory memory, List<Run> runs) {
            List<String> r = new ArrayList<>();
            for (Run run : runs) {
                r.add(Long.toHexString(run.offset()) + ":" + Long.toHexString(run.pa()) + "+" + Long.toHexString(run.length()));
            }
            calls.add("map 0x" + Long.toHexString(address) + "+0x" + Long.toHexString(length) + " prot=" + prot + " runs=" + r);
            return new HostMapping() {
                boolean closed;

                @Override
                public long address() {
                    return address;
                }

                @Override
                public long length() {
                    return length;
                }

                @Override
                public boolean isClosed() {
                    return closed;
                }

                @Override
                public void close() {
                    if (busy) {
                        throw new IllegalStateException("busy: a view is held");
                    }
                    closed = true;
                }
            };
        }

        @Override
        public synchronized void release(long address, long length) {
            calls.add("release 0x" + Long.toHexString(address) + "+0x" + Long.toHexString(length));
        }
    }
}
