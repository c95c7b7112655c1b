package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.X86_64Format;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.vcmm.DeviceDmaTest.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Sparse reservations: unbound pages read zero and drop writes through the shared null page; pages bind while devices run. */
class SparseReservationTest {

    static final long MIB = 1L << 20;
    static final long KIB = 1L << 10;
    static final long VA = 0x4000_0000L;
    static final int PAGES = 16;
    static final int LEN = PAGES * 4096;

    Vcmm vcmm;
    Device gpu;
    Vcm vcm;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.graph().ddr(0x8000_0000L, 64 * MIB).pageTables(16 * MIB).build();
        gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        vcm = vcmm.createVcm(VA, 64 * MIB);
        vcmm.assoc(vcm, gpu).activate();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    PhysMem filledMemory(int length, int seed) {
        PhysMem pm = vcmm.physAlloc("ddr", length, ChunkPolicy.PAGES_4K);
        byte[] data = pattern(length, seed);
        for (int o = 0; o < length; o += 4096) {
            pm.memoryType().memory().copyIn(data, o, pm.physicalAddress(o), 4096);
        }
        return pm;
    }

    byte[] read(Device d, long va, int n) {
        byte[] b = new byte[n];
        d.read(va, b, 0, n);
        return b;
    }

    byte[] nullPageBytes() {
        byte[] b = new byte[4096];
        vcmm.memoryType("ddr").memory().copyOut(vcm.nullPage().address(), b, 0, 4096);
        return b;
    }

    @Test
    void shouldReadZeroFromUnboundPagesAndDropWritesToThem() {
        Reservation r = vcm.reserveSparse(LEN, ReservationAttributes.RW);
        assertTrue(r.isSparse());
        assertTrue(r.isBacked());
        assertNull(r.backingMemory(), "the null page is not the caller's memory");
        assertEquals(-1, r.backingOffset());
        assertArrayEquals(new byte[LEN], read(gpu, r.address(), LEN));
        byte[] junk = pattern(LEN, 3);
        gpu.write(r.address(), junk, 0, LEN); // dropped, not a fault
        assertEquals(LEN, gpu.droppedWriteBytes());
        assertEquals(0, gpu.stats().faults());
        assertArrayEquals(new byte[LEN], read(gpu, r.address(), LEN));
        assertArrayEquals(new byte[4096], nullPageBytes());
        assertEquals(-1, r.physicalAddress(r.address()));
        assertEquals(List.of(), vcmm.whoMaps(vcm.nullPage().address()), "the null page is no user memory");
        assertTrue(vcmm.translate(vcm, r.address(), vcm).isEmpty());
        // a plain reservation still faults where nothing is mapped
        Reservation plain = vcm.reserve(LEN, ReservationAttributes.RW);
        assertEquals(FaultReason.TRANSLATION, assertThrows(DeviceFaultException.class,
            () -> read(gpu, plain.address(), 1)).fault().reason());
    }

    @Test
    void shouldBindAndUnbindPagesWhileTheOthersStayZero() {
        Reservation r = vcm.reserveSparse(LEN, ReservationAttributes.RW);
        PhysMem pm = filledMemory(2 * 4096, 7);
        byte[] data = pattern(2 * 4096, 7);
        r.remap(4 * 4096, 2 * 4096, pm, 0);
        byte[] expect = new byte[LEN];
        System.arraycopy(data, 0, expect, 4 * 4096, 2 * 4096);
        assertArrayEquals(expect, read(gpu, r.address(), LEN));
        assertEquals(pm.physicalAddress(4096), r.physicalAddress(r.address() + 5 * 4096));
        assertEquals(r, vcmm.whoMaps(pm.physicalAddress(0)).getFirst().reservation());
        assertEquals(1, pm.backingCount());
        // a write to a bound page lands; one to an unbound page is dropped
        byte[] w = pattern(4096, 9);
        gpu.write(r.address() + 5 * 4096, w, 0, 4096);
        gpu.write(r.address() + 6 * 4096, w, 0, 4096);
        assertEquals(4096, gpu.droppedWriteBytes());
        assertArrayEquals(w, read(gpu, r.address() + 5 * 4096, 4096));
        assertArrayEquals(new byte[4096], read(gpu, r.address() + 6 * 4096, 4096));
        // unbind one page: zero again, the memory keeps its bytes and one binding
        r.unback(5 * 4096, 4096);
        assertArrayEquals(new byte[4096], read(gpu, r.address() + 5 * 4096, 4096));
        assertArrayEquals(Arrays.copyOf(data, 4096), read(gpu, r.address() + 4 * 4096, 4096));
        byte[] kept = new byte[4096];
        pm.memoryType().memory().copyOut(pm.physicalAddress(4096), kept, 0, 4096);
        assertArrayEquals(w, kept);
        assertEquals(List.of(), vcmm.whoMaps(pm.physicalAddress(4096)));
        // unbinding everything keeps the reservation backed by the null page and releases the memory
        r.unback(0, LEN);
        assertTrue(r.isBacked());
        assertEquals(0, pm.backingCount());
        assertEquals(List.of(), vcmm.reservationsOf(pm));
        pm.free();
        assertArrayEquals(new byte[LEN], read(gpu, r.address(), LEN));
        assertArrayEquals(new byte[4096], nullPageBytes());
        // unback() removes the null mappings too: it faults, and can be unreserved
        r.unback();
        assertFalse(r.isBacked());
        assertEquals(FaultReason.TRANSLATION, assertThrows(DeviceFaultException.class,
            () -> read(gpu, r.address(), 1)).fault().reason());
        r.unreserve();
    }

    @Test
    void shouldShareOneNullPageAndKeepItWhileSparseReservationsExist() {
        Reservation a = vcm.reserveSparse(LEN, ReservationAttributes.RW);
        PhysMem np = vcm.nullPage().page();
        Reservation b = vcm.reserveSparse(LEN, ReservationAttributes.RW);
        assertSame(np, vcm.nullPage().page());
        assertEquals(2, np.backingCount());
        a.unback();
        a.unreserve();
        assertEquals(1, np.backingCount());
        assertThrows(IllegalStateException.class, np::free, "the null page is not freed under a sparse reservation");
        assertArrayEquals(new byte[LEN], read(gpu, b.address(), LEN));
        Vcm other = vcmm.createVcm(0x1_0000_0000L, 16 * MIB);
        vcmm.assoc(other, vcmm.device("dsp", X86_64Format.INSTANCE)).activate();
        Reservation c = other.reserveSparse(LEN, ReservationAttributes.RW);
        assertSame(np, other.nullPage().page(), "one null page per Vcmm");
        assertEquals(2, np.backingCount());
        c.unback();
    }

    @Test
    void shouldGiveANewFormatTheNullMappingsAndTheBindings() {
        Reservation r = vcm.reserveSparse(LEN, ReservationAttributes.RW);
        PhysMem pm = filledMemory(4096, 5);
        r.remap(3 * 4096, 4096, pm, 0);
        Device cpu = vcmm.device("x86", X86_64Format.INSTANCE); // a second format: a new table built from the graph
        vcmm.assoc(vcm, cpu).activate();
        byte[] expect = new byte[LEN];
        System.arraycopy(pattern(4096, 5), 0, expect, 3 * 4096, 4096);
        assertArrayEquals(expect, read(cpu, r.address(), LEN));
        cpu.write(r.address(), new byte[]{1, 2, 3}, 0, 3);
        assertEquals(3, cpu.droppedWriteBytes());
        r.unback(3 * 4096, 4096);
        assertArrayEquals(new byte[LEN], read(cpu, r.address(), LEN));
        assertArrayEquals(new byte[LEN], read(gpu, r.address(), LEN));
    }

    @Test
    void shouldRefuseBadSparseRequestsAndChangeNothing() {
        int before = vcm.reservations().size();
        Vcm oneToOne = vcmm.createOneToOneVcm(vcmm.memoryType("ddr"));
        assertThrows(IllegalArgumentException.class, () -> oneToOne.reserveSparse(LEN, ReservationAttributes.RW));
        assertEquals(0, oneToOne.reservations().size());
        ReservationAttributes writeOnly = new ReservationAttributes(false, true, false, false, true, false,
            Caching.WRITE_BACK_WRITE_ALLOCATE);
        assertThrows(IllegalArgumentException.class, () -> vcm.reserveSparse(LEN, writeOnly));
        assertThrows(IllegalArgumentException.class, () -> vcm.reserveSparse(0, ReservationAttributes.RW));
        assertEquals(before, vcm.reservations().size());
        assertEquals(-1, vcm.nullPage().address(), "no null page taken by refused calls");
        Reservation r = vcm.reserveSparse(LEN, ReservationAttributes.RW);
        assertThrows(IllegalArgumentException.class, () -> r.setAttributes(ReservationAttributes.RO));
        assertEquals(ReservationAttributes.RW, r.attributes());
        assertThrows(IllegalStateException.class, () -> r.back(filledMemory(LEN, 1)), "already backed");
        assertThrows(IllegalArgumentException.class, () -> r.unback(1, 4096));
        assertThrows(IllegalArgumentException.class, () -> r.remap(LEN - 4096, 8192, filledMemory(8192, 1), 0));
        gpu.write(r.address(), new byte[]{1}, 0, 1);
        assertArrayEquals(new byte[LEN], read(gpu, r.address(), LEN));
        assertThrows(IllegalStateException.class, () -> vcmm.cloneVcm(vcm), "a reservation with bindings is refused");
    }

    /**
     * Two devices read and write a sparse reservation while the main thread binds and unbinds its pages: a read sees
     * zero or the page's own bound bytes (never a fault, never another page's bytes), a write to an unbound page is
     * dropped and is never seen by a reader. Readers start at a barrier; the test counts reads that overlapped a bind
     * or unbind.
     */
    @Test
    void shouldReadZeroOrTheBoundBytesWhilePagesBindAndUnbind() throws Exception {
        Device dma = vcmm.device("dma", Arm64Lpae4kFormat.INSTANCE);
        vcmm.assoc(vcm, dma).activate();
        Reservation r = vcm.reserveSparse(LEN, ReservationAttributes.RW);
        PhysMem pm = filledMemory(LEN, 11);
        byte[] all = pattern(LEN, 11);
        byte[] zero = new byte[4096];
        AtomicBoolean stop = new AtomicBoolean();
        AtomicBoolean changing = new AtomicBoolean();
        AtomicLong overlaps = new AtomicLong();
        AtomicLong reads = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CyclicBarrier start = new CyclicBarrier(4);
        List<Thread> threads = new ArrayList<>();
        for (Device d : List.of(gpu, dma)) {
            Thread t = new Thread(() -> {
                byte[] page = new byte[4096];
                try {
                    start.await();
                    for (int i = 0; !stop.get(); i++) {
                        int p = (i * 7) % PAGES;
                        boolean during = changing.get();
                        d.read(r.address() + p * 4096L, page, 0, 4096);
                        if (!Arrays.equals(page, zero) && !Arrays.equals(page, Arrays.copyOfRange(all, p * 4096, p * 4096 + 4096))) {
                            throw new AssertionError("page " + p + " read neither zero nor its own bytes");
                        }
                        if (during && changing.get()) {
                            overlaps.incrementAndGet();
                        }
                        reads.incrementAndGet();
                        Thread.yield();
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            t.start();
            threads.add(t);
        }
        // a writer writes junk over the odd pages, which are never bound: every byte must be dropped
        Thread writer = new Thread(() -> {
            byte[] junk = pattern(4096, 99);
            try {
                start.await();
                for (int i = 0; !stop.get(); i++) {
                    dma.write(r.address() + (1 + 2L * (i % (PAGES / 2))) * 4096, junk, 0, 4096);
                    Thread.yield(); // leave the binder some CPU on a small machine
                }
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            }
        });
        writer.start();
        threads.add(writer);
        start.await();
        int rounds = Boolean.getBoolean("vcmm.long") ? 20_000 : 200;
        // at least `rounds`, then on until some read overlapped a change (bounded): on a loaded machine the readers
        // may not have run during the first rounds at all
        for (int round = 0; failure.get() == null && (round < rounds || overlaps.get() == 0 && round < rounds * 500);
             round++) {
            int p = 2 * (round % (PAGES / 2)); // even pages only
            changing.set(true);
            r.remap(p * 4096L, 4096, pm, p * 4096L);
            r.unback(p * 4096L, 4096);
            changing.set(false);
        }
        stop.set(true);
        for (Thread t : threads) {
            t.join();
        }
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        assertTrue(overlaps.get() > 0, "some reads ran while a page was bound or unbound: " + overlaps + " of " + reads);
        assertEquals(0, gpu.stats().failed() + dma.stats().failed());
        assertTrue(dma.droppedWriteBytes() > 0);
        assertArrayEquals(zero, nullPageBytes());
        byte[] mem = new byte[LEN];
        pm.memoryType().memory().copyOut(pm.physicalAddress(0), mem, 0, LEN);
        assertArrayEquals(all, mem, "no dropped write landed in the bound memory");
        System.out.printf("SparseReservationTest: %d reads, %d during a bind or unbind, %d rounds, %d bytes dropped%n",
            reads.get(), overlaps.get(), rounds, dma.droppedWriteBytes());
    }
}
