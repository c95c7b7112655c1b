package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.RiscvSv48Format;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Dirty tracking of a VCM through real DMA: what devices write is reported once, cleaned, and no write is lost to
 * an IOTLB entry or a burst in flight.
 */
class DirtyTrackingTest {

    static final long MIB = 1L << 20;
    static final long VA = 0x1000_0000L;
    static final int PAGE = 4096;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 128 * MIB).pageTables(16 * MIB).build();
    }

    @AfterEach
    void close() {
        Device.burstHook = null;
        vcmm.close();
    }

    Vcm vcmWith(PageTableFormat... formats) {
        return vcmWith("dev", formats);
    }

    /** A VCM at {@link #VA} with one active device per format, named {@code prefix + i}. */
    Vcm vcmWith(String prefix, PageTableFormat... formats) {
        Vcm vcm = vcmm.createVcm(VA, 64 * MIB);
        int i = 0;
        for (PageTableFormat f : formats) {
            vcmm.assoc(vcm, vcmm.device(prefix + i++, f)).activate();
        }
        return vcm;
    }

    /** Where the next {@link #backed} reservation goes: 4 KiB past a 64 KiB boundary, so arm64 maps single pages, not runs. */
    long next = VA + PAGE;

    Reservation backed(Vcm vcm, long length, ChunkPolicy policy) {
        Reservation r = vcm.reserveAt(next, length, ReservationAttributes.RW);
        next += length + PAGE;
        return r.back(vcmm.physAlloc("ddr", length, policy));
    }

    static void write(Device d, long va, int value) {
        byte[] b = new byte[8];
        for (int i = 0; i < 8; i++) {
            b[i] = (byte) (value >>> (8 * (i & 3)));
        }
        d.write(va, b, 0, 8);
    }

    static List<Long> pages(DirtyBitmap b) {
        List<Long> out = new ArrayList<>();
        b.forEachDirtyPage(out::add);
        return out;
    }

    @Test
    void shouldReportExactlyThePagesDevicesWroteOnEveryFormat() {
        for (PageTableFormat f : List.of(Arm64Lpae4kFormat.INSTANCE, X86_64Format.INSTANCE, RiscvSv48Format.INSTANCE)) {
            Vcm vcm = vcmWith(f.name(), f);
            next = VA + PAGE;
            Reservation r = backed(vcm, 64 * PAGE, ChunkPolicy.PAGES_4K);
            DirtyTracking dt = vcm.dirtyTracking();
            dt.enable();
            assertEquals(0, dt.readNoClear(r.address(), r.length()).dirtyPages(), f + ": enable cleans everything");
            Device d = vcmm.device(f.name() + "0");
            write(d, r.address() + 3 * PAGE + 100, 1);
            write(d, r.address() + 10 * PAGE, 2);
            d.read(r.address() + 20 * PAGE, new byte[64], 0, 64); // a read dirties nothing
            assertEquals(List.of(r.address() + 3 * PAGE, r.address() + 10 * PAGE), pages(dt.readNoClear(r.address(), r.length())));
            DirtyBitmap b = dt.readAndClear(r.address(), r.length());
            assertEquals(PAGE, b.pageSize());
            assertEquals(List.of(r.address() + 3 * PAGE, r.address() + 10 * PAGE), pages(b), f.name());
            assertEquals(0, dt.readAndClear(r.address(), r.length()).dirtyPages(), "cleared");
            dt.disable();
            assertThrows(IllegalStateException.class, () -> dt.readNoClear(r.address(), r.length()), "disabled");
        }
    }

    @Test
    void shouldNotLoseAWriteThroughAnIotlbEntryTakenBeforeTheClear() {
        Vcm vcm = vcmWith(Arm64Lpae4kFormat.INSTANCE);
        Reservation r = backed(vcm, 16 * PAGE, ChunkPolicy.PAGES_4K);
        DirtyTracking dt = vcm.dirtyTracking();
        dt.enable();
        Device d = vcmm.device("dev0");
        write(d, r.address(), 1); // the IOTLB now holds a writable entry for page 0
        assertEquals(1, dt.readAndClear(r.address(), r.length()).dirtyPages());
        long hits = d.iotlb().hits();
        write(d, r.address(), 2); // must walk again (the entry was invalidated) and mark the page
        assertEquals(hits, d.iotlb().hits(), "the write walked: its IOTLB entry was invalidated by the clear");
        assertEquals(List.of(r.address()), pages(dt.readAndClear(r.address(), r.length())));
        // a read first caches the clean page without write permission; the write after it still marks it
        d.read(r.address() + PAGE, new byte[8], 0, 8);
        write(d, r.address() + PAGE, 3);
        assertEquals(List.of(r.address() + PAGE), pages(dt.readAndClear(r.address(), r.length())));
    }

    @Test
    void shouldWaitForABurstThatTranslatedBeforeTheClear() throws Exception {
        Vcm vcm = vcmWith(X86_64Format.INSTANCE);
        Reservation r = backed(vcm, 16 * PAGE, ChunkPolicy.PAGES_4K);
        DirtyTracking dt = vcm.dirtyTracking();
        dt.enable();
        Device d = vcmm.device("dev0");
        CountDownLatch inBurst = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        Device.burstHook = (dev, va, pa, n, access) -> {
            if (access == Access.WRITE) {
                inBurst.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<?> writer = pool.submit(() -> write(d, r.address() + 5 * PAGE, 0x55));
            assertTrue(inBurst.await(10, TimeUnit.SECONDS));
            Device.burstHook = null;
            // the burst translated (page 5 dirty) and is stopped before its copy: the read cleans, then must wait
            Future<DirtyBitmap> read = pool.submit(() -> dt.readAndClear(r.address(), r.length()));
            Thread.sleep(100);
            assertFalse(read.isDone(), "readAndClear returned while a burst that used the old translation was in flight");
            release.countDown();
            writer.get(10, TimeUnit.SECONDS);
            DirtyBitmap b = read.get(10, TimeUnit.SECONDS);
            assertEquals(List.of(r.address() + 5 * PAGE), pages(b));
            assertEquals(1, d.stats().syncWaits(), "the sync found the burst in flight");
        } finally {
            release.countDown();
            pool.shutdownNow();
        }
    }

    @Test
    void shouldReportABlockAsAllItsPages() {
        Vcm vcm = vcmWith(X86_64Format.INSTANCE);
        Reservation r = vcm.reserve(2 * MIB, ReservationAttributes.RW, 2 * MIB)
            .back(vcmm.physAlloc(vcmm.memoryType("ddr"), 2 * MIB, ChunkPolicy.HUGE, PhysAllocOptions.CONTIGUOUS));
        DirtyTracking dt = vcm.dirtyTracking();
        dt.enable();
        write(vcmm.device("dev0"), r.address() + 7 * PAGE, 1);
        assertEquals(512, dt.readAndClear(r.address(), r.length()).dirtyPages());
        DirtyBitmap part = dt.readAndClear(r.address(), 4 * PAGE);
        assertEquals(0, part.dirtyPages());
    }

    @Test
    void shouldReportANewMappingAsDirty() {
        Vcm vcm = vcmWith(Arm64Lpae4kFormat.INSTANCE);
        DirtyTracking dt = vcm.dirtyTracking();
        dt.enable();
        Reservation r = backed(vcm, 4 * PAGE, ChunkPolicy.PAGES_4K);
        assertEquals(4, dt.readAndClear(r.address(), r.length()).dirtyPages());
    }

    @Test
    void shouldRefuseBadCallsAndChangeNothing() {
        Vcm vcm = vcmWith(Arm64Lpae4kFormat.INSTANCE);
        Reservation r = backed(vcm, 4 * PAGE, ChunkPolicy.PAGES_4K);
        DirtyTracking dt = vcm.dirtyTracking();
        assertThrows(IllegalStateException.class, () -> dt.readAndClear(r.address(), PAGE), "not enabled");
        assertThrows(IllegalStateException.class, dt::disable);
        dt.enable();
        assertThrows(IllegalStateException.class, dt::enable);
        write(vcmm.device("dev0"), r.address(), 1);
        assertThrows(IllegalArgumentException.class, () -> dt.readAndClear(r.address() + 1, PAGE));
        assertThrows(IllegalArgumentException.class, () -> dt.readAndClear(r.address(), PAGE + 1));
        assertThrows(IllegalArgumentException.class, () -> dt.readAndClear(VA - PAGE, 2 * PAGE), "outside the VCM");
        assertThrows(IllegalArgumentException.class, () -> dt.readAndClear(VA, 0));
        assertEquals(1, dt.readNoClear(r.address(), r.length()).dirtyPages(), "the refusals cleaned nothing");
        DirtyBitmap b = dt.readNoClear(r.address(), r.length());
        assertThrows(IllegalArgumentException.class, () -> b.isDirty(r.address() + r.length()));

        // a format without dirty bits: refused, nothing changed
        Vcm v7 = vcmm.createVcm(0x4000_0000L, 16 * MIB);
        vcmm.assoc(v7, vcmm.device("old", Armv7ShortFormat.INSTANCE)).activate();
        assertThrows(UnsupportedOperationException.class, () -> v7.dirtyTracking().enable());
        assertFalse(v7.dirtyTracking().isEnabled());
        Vcm oneToOne = vcmm.createOneToOneVcm(vcmm.memoryType("ddr"));
        assertThrows(UnsupportedOperationException.class, () -> oneToOne.dirtyTracking().enable());
        assertFalse(oneToOne.dirtyTracking().isEnabled());
    }

    /**
     * Live migration in miniature under contention: two writers keep writing versions into random pages while the
     * migrator reads and clears the dirty pages and copies them to a shadow; at the end (writers stopped, one last
     * round) the shadow equals the source, so no write was lost. Barrier start; the overlap count proves that reads
     * ran while writes were in progress.
     */
    @Test
    void shouldLoseNoWriteWhenDevicesWriteDuringReadAndClear() throws Exception {
        Vcm vcm = vcmWith(Arm64Lpae4kFormat.INSTANCE, X86_64Format.INSTANCE);
        int pages = 64;
        Reservation r = backed(vcm, pages * PAGE, ChunkPolicy.PAGES_4K);
        PhysMem pm = r.backingMemory(); // backed at offset 0
        DirtyTracking dt = vcm.dirtyTracking();
        dt.enable();
        byte[] shadow = new byte[pages * PAGE]; // the destination; everything is zero at the start, as the source
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong writesDone = new AtomicLong();
        CyclicBarrier start = new CyclicBarrier(3);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        long overlaps = 0;
        try {
            List<Future<?>> writers = new ArrayList<>();
            for (int w = 0; w < 2; w++) {
                Device d = vcmm.device("dev" + w);
                int seed = w;
                writers.add(pool.submit(() -> {
                    start.await();
                    java.util.Random rnd = new java.util.Random(seed);
                    int version = 0;
                    while (!stop.get()) {
                        int p = rnd.nextInt(pages);
                        int off = rnd.nextInt(PAGE / 8) * 8;
                        write(d, r.address() + (long) p * PAGE + off, (seed << 28) | ++version);
                        writesDone.incrementAndGet();
                    }
                    return null;
                }));
            }
            start.await();
            // at least 300 rounds, and more (up to 20,000) until reads have overlapped writes often enough: on two
            // cores the three threads may be scheduled so that the window is rarely hit in the first 300
            for (int round = 0; round < 300 || (overlaps <= 10 && round < 20_000); round++) {
                long before = writesDone.get();
                DirtyBitmap b = dt.readAndClear(r.address(), r.length());
                if (writesDone.get() != before) {
                    overlaps++;
                }
                copy(pm, b, r.address(), shadow);
            }
            stop.set(true);
            for (Future<?> w : writers) {
                w.get(30, TimeUnit.SECONDS);
            }
            copy(pm, dt.readAndClear(r.address(), r.length()), r.address(), shadow);
        } finally {
            stop.set(true);
            pool.shutdownNow();
        }
        byte[] source = new byte[pages * PAGE];
        for (int p = 0; p < pages; p++) {
            pm.memoryType().memory().copyOut(pm.physicalAddress((long) p * PAGE), source, p * PAGE, PAGE);
        }
        assertArrayEquals(source, shadow, "a write was lost: the copy differs from the source");
        assertTrue(overlaps > 10, "reads overlapped writes only " + overlaps + " times");
        assertTrue(writesDone.get() > 1000, "writes: " + writesDone.get());
    }

    static void copy(PhysMem pm, DirtyBitmap b, long base, byte[] shadow) {
        b.forEachDirtyPage(page -> {
            long off = page - base;
            pm.memoryType().memory().copyOut(pm.physicalAddress(off), shadow, (int) off, PAGE);
        });
    }
}
