package dev.vcmm.ffm;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Client;
import dev.vcmm.Device;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysAllocOptions;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.spi.MemoryBackend;
import dev.vcmm.spi.BlockAllocator;
import dev.vcmm.spi.MemorySpec;
import dev.vcmm.spi.PhysicalMemory;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * HOST VCMs for real: reservations in this process's address space, backed by mmap of the memfd that holds the
 * simulated physical memory, read and written through {@link HostSegments} views.
 */
class HostVcmTest {

    static final long DDR = 0x8000_0000L;
    static final long KIB = 1L << 10;
    static final long MIB = 1L << 20;
    static final ChunkPolicy CHUNKS_64K = ChunkPolicy.of(64 * KIB);

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(DDR, 256 * MIB).pageTables(16 * MIB).secure(16 * MIB).build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (i * 31 + seed * 17 + (i >>> 8));
        }
        return b;
    }

    /** An allocation of 64 KiB chunks deliberately out of order: every other chunk taken, then given back. */
    PhysMem scattered(long length) {
        List<PhysMem> holes = new ArrayList<>();
        for (int i = 0; i < length / (64 * KIB); i++) {
            holes.add(vcmm.physAlloc("ddr", 64 * KIB, CHUNKS_64K));
        }
        List<PhysMem> keep = new ArrayList<>();
        for (int i = 0; i < holes.size(); i += 2) {
            keep.add(vcmm.physAlloc("ddr", 64 * KIB, CHUNKS_64K)); // interleave
        }
        holes.forEach(PhysMem::free);
        PhysMem pm = vcmm.physAlloc("ddr", length, CHUNKS_64K);
        keep.forEach(PhysMem::free);
        return pm;
    }

    static boolean isPhysicallyContiguous(PhysMem pm) {
        for (int i = 1; i < pm.chunks().size(); i++) {
            if (pm.chunks().get(i).pa() != pm.chunks().get(i - 1).end()) {
                return false;
            }
        }
        return true;
    }

    // ---------------------------------------------------------------------------------------------
    // the view

    @Test
    void shouldShowScatteredChunksAsOneContiguousSegment() {
        Vcm host = vcmm.createHostVcm(16 * MIB);
        assertEquals(Vcm.Kind.HOST, host.kind());
        assertEquals(0, host.start() % (2 * MIB));
        PhysMem pm = scattered(4 * MIB);
        assertFalse(isPhysicallyContiguous(pm), "the test needs scattered chunks: " + pm);
        Reservation r = host.reserve(4 * MIB, ReservationAttributes.RW).back(pm);

        MemorySegment s = HostSegments.segment(r);
        assertEquals(r.address(), s.address(), "the reservation's address is the process address");
        assertEquals(4 * MIB, s.byteSize());
        byte[] data = pattern((int) (4 * MIB), 1);
        MemorySegment.copy(data, 0, s, ValueLayout.JAVA_BYTE, 0, data.length);

        PhysicalMemory phys = vcmm.memoryType("ddr").memory();
        for (long off = 0; off < 4 * MIB; off += 4093) {
            byte[] one = new byte[1];
            phys.copyOut(pm.physicalAddress(off), one, 0, 1);
            assertEquals(data[(int) off], one[0], "byte " + off + " is at its chunk's physical address");
        }
        phys.spLong(pm.physicalAddress(3 * MIB + 8), 0x1122_3344_5566_7788L);
        assertEquals(0x1122_3344_5566_7788L, s.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 3 * MIB + 8));
        List<ProcMaps.Area> areas = ProcMaps.overlapping(r.address(), r.length());
        assertTrue(areas.stream().allMatch(a -> a.perms().equals("rw-s") && a.path().contains("memfd:vcmm-ddr")), areas.toString());
    }

    @Test
    void shouldShareBytesWithADeviceThroughItsIommuBothWays() {
        Device gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        Vcm gpuVcm = vcmm.createVcm(0x4000_0000L, 64 * MIB);
        vcmm.assoc(gpuVcm, gpu).activate();
        Vcm host = vcmm.createHostVcm(16 * MIB);
        PhysMem pm = scattered(2 * MIB);
        Reservation cpuRes = host.reserve(2 * MIB, ReservationAttributes.RW).back(pm);
        Reservation gpuRes = gpuVcm.reserve(2 * MIB, ReservationAttributes.RW, 64 * KIB).back(pm);
        MemorySegment s = HostSegments.segment(cpuRes);

        byte[] cpuWrote = pattern(300_000, 2);
        MemorySegment.copy(cpuWrote, 0, s, ValueLayout.JAVA_BYTE, 12345, cpuWrote.length);
        byte[] gpuRead = new byte[cpuWrote.length];
        gpu.read(gpuRes.address() + 12345, gpuRead, 0, gpuRead.length);
        assertArrayEquals(cpuWrote, gpuRead, "the device DMA-reads what the CPU stored");

        byte[] gpuWrote = pattern(200_000, 3);
        gpu.write(gpuRes.address() + MIB, gpuWrote, 0, gpuWrote.length);
        byte[] cpuRead = s.asSlice(MIB, gpuWrote.length).toArray(ValueLayout.JAVA_BYTE);
        assertArrayEquals(gpuWrote, cpuRead, "the CPU loads what the device DMA-wrote");
    }

    @Test
    void shouldLetADeviceShareTheProcessAddressesWhenAssociatedWithTheHostVcm() {
        // shared virtual addressing: the device walks a table of the HOST VCM, so its addresses are the CPU's
        Device accel = vcmm.device("accel", Arm64Lpae4kFormat.INSTANCE);
        Vcm host = vcmm.createHostVcm(16 * MIB);
        vcmm.assoc(host, accel).activate();
        Reservation r = host.reserve(MIB, ReservationAttributes.RW).back(scattered(MIB));
        MemorySegment s = HostSegments.segment(r);
        s.set(ValueLayout.JAVA_LONG, 4096, 0xfeed_face_cafe_beefL);
        byte[] b = new byte[8];
        accel.read(s.address() + 4096, b, 0, 8);
        assertEquals(0xfeed_face_cafe_beefL, MemorySegment.ofArray(b).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
        r.unback();
        byte[] after = new byte[8];
        assertThrows(dev.vcmm.DeviceFaultException.class, () -> accel.read(s.address() + 4096, after, 0, 8),
            "unback took the device's mapping away too");
    }

    @Test
    void shouldMakeTheViewUnusableAfterUnbackWithoutHarmingTheProcess() {
        Vcm host = vcmm.createHostVcm(16 * MIB);
        Reservation r = host.reserve(MIB, ReservationAttributes.RW).back(scattered(MIB));
        MemorySegment s = HostSegments.segment(r);
        s.set(ValueLayout.JAVA_INT, 0, 42);
        r.unback();

        IllegalStateException e = assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_INT, 0));
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> s.set(ValueLayout.JAVA_INT, 0, 1));
        assertThrows(IllegalStateException.class, () -> HostSegments.segment(r));
        assertNull(r.hostMapping());
        List<ProcMaps.Area> areas = ProcMaps.overlapping(r.address(), r.length());
        assertTrue(areas.stream().allMatch(a -> a.perms().equals("---p")), "back to no access: " + areas);
        assertFalse(areas.isEmpty(), "still reserved, so nothing else lands there");

        r.back(scattered(MIB)); // the same range backs again, with fresh views
        assertEquals(0, HostSegments.segment(r).get(ValueLayout.JAVA_INT, 0), "other memory, zeroed");
    }

    @Test
    void shouldStopAReaderRacingWithUnbackCleanly() throws Exception {
        Vcm host = vcmm.createHostVcm(16 * MIB);
        for (int round = 0; round < 20; round++) {
            Reservation r = host.reserve(MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, CHUNKS_64K));
            MemorySegment s = HostSegments.segment(r);
            AtomicBoolean started = new AtomicBoolean();
            AtomicLong sum = new AtomicLong();
            try (ExecutorService pool = Executors.newSingleThreadExecutor()) {
                Future<Throwable> reader = pool.submit(() -> {
                    try {
                        long acc = 0;
                        while (true) {
                            for (long off = 0; off < MIB; off += 8) {
                                acc += s.get(ValueLayout.JAVA_LONG, off);
                            }
                            started.set(true);
                            sum.set(acc);
                        }
                    } catch (Throwable t) {
                        return t;
                    }
                });
                while (!started.get()) {
                    Thread.onSpinWait();
                }
                PhysMem pm = r.backingMemory();
                r.unback();
                Throwable t = reader.get();
                assertTrue(t instanceof IllegalStateException, "the reader ends with the arena's error, not a fault: " + t);
                r.unreserve();
                pm.free();
            }
        }
    }

    @Test
    void shouldGiveTheAddressSpaceBackWhenTheClientCloses() {
        Client app = vcmm.client("app");
        Vcm host = app.createHostVcm(8 * MIB);
        Reservation r = app.reserve(host, 4 * MIB, ReservationAttributes.RW, 2 * MIB);
        r.back(app.physAlloc("ddr", 4 * MIB, ChunkPolicy.HUGE));
        MemorySegment s = HostSegments.segment(r);
        s.fill((byte) 7);
        assertFalse(ProcMaps.overlapping(host.start(), host.length()).isEmpty());
        long free = vcmm.memoryType("ddr").stats().freeBytes();

        app.close();

        assertEquals(List.of(), ProcMaps.overlapping(host.start(), host.length()), "the range is unmapped");
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(free + 4 * MIB, vcmm.memoryType("ddr").stats().freeBytes(), "the chunks are free");
        assertTrue(host.isFreed());
    }

    @Test
    void shouldReleaseEverythingWhenTheVcmmCloses() {
        Vcm host = vcmm.createHostVcm(4 * MIB);
        Reservation r = host.reserve(2 * MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", 2 * MIB, ChunkPolicy.HUGE));
        MemorySegment s = HostSegments.segment(r);
        s.set(ValueLayout.JAVA_BYTE, 5, (byte) 5);
        vcmm.close();
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_BYTE, 5));
        assertEquals(List.of(), ProcMaps.overlapping(host.start(), host.length()));
    }

    @Test
    void shouldGiveAReadOnlyViewOfAReadOnlyReservation() {
        Vcm host = vcmm.createHostVcm(4 * MIB);
        PhysMem pm = vcmm.physAlloc("ddr", MIB, CHUNKS_64K);
        vcmm.memoryType("ddr").memory().spLong(pm.physicalAddress(64), 99L);
        Reservation r = host.reserve(MIB, ReservationAttributes.RO).back(pm);
        MemorySegment s = HostSegments.segment(r);
        assertTrue(s.isReadOnly());
        assertEquals(99L, s.get(ValueLayout.JAVA_LONG, 64));
        assertThrows(IllegalArgumentException.class, () -> s.set(ValueLayout.JAVA_LONG, 64, 1L), "refused in Java, no SIGSEGV");
        assertTrue(ProcMaps.overlapping(r.address(), r.length()).stream().allMatch(a -> a.perms().equals("r--s")));
    }

    // ---------------------------------------------------------------------------------------------
    // bad input

    @Test
    void shouldRefuseDoubleBackAndUnreserveWhileBacked() {
        Vcm host = vcmm.createHostVcm(4 * MIB);
        Reservation r = host.reserve(MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, CHUNKS_64K));
        MemorySegment s = HostSegments.segment(r);
        PhysMem other = vcmm.physAlloc("ddr", MIB, CHUNKS_64K);
        assertThrows(IllegalStateException.class, () -> r.back(other));
        assertThrows(VcmmBusyException.class, r::unreserve);
        assertThrows(VcmmBusyException.class, host::free);
        s.set(ValueLayout.JAVA_INT, 0, 1); // still mapped, untouched
        r.unback();
        assertThrows(IllegalStateException.class, r::unback);
    }

    @Test
    void shouldRefuseMisalignedOffsetsAndTooLittleMemory() {
        Vcm host = vcmm.createHostVcm(4 * MIB);
        Reservation r = host.reserve(MIB, ReservationAttributes.RW);
        PhysMem pm = vcmm.physAlloc("ddr", 2 * MIB, CHUNKS_64K);
        assertThrows(IllegalArgumentException.class, () -> r.back(pm, 100));
        assertThrows(IllegalArgumentException.class, () -> r.back(pm, 2 * MIB - 64 * KIB), "too little memory from there");
        assertThrows(IllegalArgumentException.class, () -> r.back(vcmm.physAlloc("ddr", 512 * KIB, CHUNKS_64K)), "too small");
        assertFalse(r.isBacked());
        assertTrue(ProcMaps.overlapping(r.address(), r.length()).stream().allMatch(a -> a.perms().equals("---p")));
        r.back(pm, 64 * KIB);
        assertTrue(r.isBacked());
    }

    @Test
    void shouldRefuseChunksSmallerThanOrMisalignedToTheHostPage() {
        vcmm.close();
        vcmm = TestGraphs.graph().ddr(DDR, 64 * MIB)
            .hostMapper(new MmapHostMapper(64 * KIB)) // as an arm64 kernel with 64K pages would be
            .build();
        Vcm host = vcmm.createHostVcm(4 * MIB);
        assertThrows(IllegalArgumentException.class, () -> host.reserve(4 * KIB, ReservationAttributes.RW), "not a whole page");
        assertThrows(IllegalArgumentException.class, () -> host.reserveAt(host.start() + 4 * KIB, 64 * KIB, ReservationAttributes.RW));
        Reservation r = host.reserve(128 * KIB, ReservationAttributes.RW);
        assertEquals(0, r.address() % (64 * KIB), "reservations are page-aligned");

        PhysMem small = vcmm.physAlloc("ddr", 128 * KIB, ChunkPolicy.PAGES_4K);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> r.back(small));
        assertTrue(e.getMessage().contains("smaller than the host page size 64K"), e.getMessage());
        PhysMem big = vcmm.physAlloc("ddr", 256 * KIB, CHUNKS_64K);
        e = assertThrows(IllegalArgumentException.class, () -> r.back(big, 16 * KIB));
        assertTrue(e.getMessage().contains("multiple of the host page size"), e.getMessage());
        assertFalse(r.isBacked());
        r.back(big, 64 * KIB);
        HostSegments.segment(r).fill((byte) 1);
    }

    @Test
    void shouldRefuseMemoryThatIsNotAMemfdOrIsSecure() {
        Vcm host = vcmm.createHostVcm(4 * MIB);
        Reservation r = host.reserve(MIB, ReservationAttributes.RW.withSecure(true));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> r.back(vcmm.physAlloc("secure", MIB, CHUNKS_64K)));
        assertTrue(e.getMessage().contains("secure"), e.getMessage());

        try (Vcmm onFiles = TestGraphs.graph().ddr(DDR, 16 * MIB).backend(new TempFileBackend()).build()) {
            Vcm h = onFiles.createHostVcm(4 * MIB);
            Reservation fr = h.reserve(MIB, ReservationAttributes.RW);
            e = assertThrows(IllegalArgumentException.class, () -> fr.back(onFiles.physAlloc("ddr", MIB, CHUNKS_64K)));
            assertTrue(e.getMessage().contains("not a memfd"), e.getMessage());
        }
    }

    @Test
    void shouldRefuseViewsOfReservationsThatAreNotHostOrNotBacked() {
        Vcm virtual = vcmm.createVcm(0x4000_0000L, 16 * MIB);
        Reservation v = virtual.reserve(MIB, ReservationAttributes.RW).back(vcmm.physAlloc("ddr", MIB, CHUNKS_64K));
        assertThrows(IllegalArgumentException.class, () -> HostSegments.segment(v));
        Vcm host = vcmm.createHostVcm(4 * MIB);
        Reservation h = host.reserve(MIB, ReservationAttributes.RW);
        assertThrows(IllegalStateException.class, () -> HostSegments.segment(h));
        assertThrows(IllegalArgumentException.class, () -> vcmm.cloneVcm(host));
    }

    // ---------------------------------------------------------------------------------------------
    // the allocator face

    @Test
    void shouldAllocateAndCloseBuffersFromManyThreads() throws Exception {
        MemoryType ddr = vcmm.memoryType("ddr");
        long free = ddr.stats().freeBytes();
        int threads = 4;
        Map<Long, Long> all = new ConcurrentHashMap<>();
        try (ExecutorService pool = Executors.newFixedThreadPool(threads)) {
            List<Future<Map<Long, Long>>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int seed = t;
                futures.add(pool.submit(() -> {
                    Map<Long, Long> addresses = new HashMap<>();
                    for (int i = 0; i < 50; i++) {
                        long length = (i % 5 + 1) * MIB + 12345;
                        try (HostBuffer b = HostBuffers.allocate(vcmm, ddr, length, ChunkPolicy.of(2 * MIB, 64 * KIB))) {
                            MemorySegment s = b.segment();
                            assertEquals(length, s.byteSize());
                            s.set(ValueLayout.JAVA_BYTE, length - 1, (byte) seed);
                            s.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, seed);
                            assertEquals(seed, s.get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
                            addresses.put(s.address(), s.byteSize());
                        }
                    }
                    return addresses;
                }));
            }
            for (Future<Map<Long, Long>> f : futures) {
                all.putAll(f.get());
            }
        }
        for (Map.Entry<Long, Long> e : all.entrySet()) { // the JVM may have mapped something else there since: look for our memfd only
            long a = e.getKey();
            assertTrue(ProcMaps.overlapping(a, e.getValue()).stream().noneMatch(m -> m.path().contains("memfd:vcmm-")),
                "released: 0x" + Long.toHexString(a));
        }
        assertEquals(free, ddr.stats().freeBytes(), "every chunk is back");
        assertEquals(List.of(), vcmm.vcms(), "every HOST VCM is gone");
    }

    @Test
    void shouldCloseABufferOnceAndFailUseAfterClose() {
        HostBuffer b = HostBuffers.allocate(vcmm, vcmm.memoryType("ddr"), 3 * MIB, ChunkPolicy.HUGE);
        MemorySegment s = b.segment();
        s.fill((byte) 3);
        b.close();
        b.close();
        assertThrows(IllegalStateException.class, b::segment);
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_BYTE, 0));
        assertThrows(IllegalArgumentException.class, () -> HostBuffers.allocate(vcmm, vcmm.memoryType("ddr"), 0, ChunkPolicy.HUGE));
    }

    /** The ffm backend over temporary files: memory that exists but has no memfd to map. */
    static final class TempFileBackend implements MemoryBackend {
        private final FfmMemoryBackend ffm = new FfmMemoryBackend();

        @Override
        public String name() {
            return "tempfile";
        }

        @Override
        public int priority() {
            return 0;
        }

        @Override
        public PhysicalMemory openMemory(MemorySpec spec) {
            return SegmentPhysicalMemory.open(spec.name(), spec.base(), spec.size(), SegmentPhysicalMemory.Backing.TEMP_FILE);
        }

        @Override
        public BlockAllocator openAllocator(MemorySpec spec) {
            return ffm.openAllocator(spec);
        }
    }
}
