package dev.vcmm;

import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import dev.vcmm.pagetable.Armv7ShortFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ClientTest {

    static final long MIB = 1L << 20;
    Vcmm vcmm;
    Device gpu;
    Device cam;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.ddrAndTables(128 * MIB);
        gpu = vcmm.device("gpu", Arm64Lpae4kFormat.INSTANCE);
        cam = vcmm.device("cam", Armv7ShortFormat.INSTANCE);
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    long allocated(String memoryType) {
        return vcmm.memoryType(memoryType).stats().allocatedBytes();
    }

    @Test
    void shouldGiveEverythingBackOnClose() {
        Client c = vcmm.client("app");
        Vcm vcm = c.createVcm(0x1000_0000L, 64 * MIB);
        c.assoc(vcm, gpu).activate();
        c.assoc(vcm, cam).activate();
        Reservation r = c.reserve(vcm, 4 * MIB, ReservationAttributes.RW, MIB);
        r.back(c.physAlloc("ddr", 4 * MIB, ChunkPolicy.VCMM));
        assertTrue(gpu.translate(r.address()).isMapped());
        assertTrue(allocated("pt") > 0 && allocated("ddr") == 4 * MIB);
        c.close();
        c.close(); // idempotent
        assertTrue(c.isClosed());
        assertFalse(gpu.translate(r.address()).isMapped());
        assertTrue(vcm.isFreed());
        assertEquals(0, allocated("ddr"));
        assertEquals(0, allocated("pt"), "no page-table page left behind");
        assertThrows(IllegalStateException.class, () -> c.createVcm(0, MIB));
    }

    @Test
    void shouldKeepMemoryThatStillBacksAnotherClientsReservation() {
        Client producer = vcmm.client("producer");
        Client consumer = vcmm.client("consumer");
        PhysMem shared = producer.physAlloc("ddr", 2 * MIB, ChunkPolicy.VCMM);
        Vcm pv = producer.createVcm(0x1000_0000L, 64 * MIB);
        producer.assoc(pv, gpu).activate();
        producer.reserve(pv, 2 * MIB, ReservationAttributes.RW, MIB).back(shared);
        Vcm cv = consumer.createVcm(0x2000_0000L, 64 * MIB);
        consumer.assoc(cv, cam).activate();
        Reservation cr = consumer.reserve(cv, 2 * MIB, ReservationAttributes.RO, MIB);
        cr.back(shared);

        producer.close();
        assertFalse(shared.isFreed(), "still backs the consumer's reservation");
        assertEquals(2 * MIB, allocated("ddr"));
        assertEquals(shared.physicalAddress(MIB), ((WalkResult.Translation) cam.translate(cr.address() + MIB)).pa());
        consumer.close();
        assertTrue(shared.isFreed(), "the last unback freed the orphan");
        assertEquals(0, allocated("ddr"));
        assertEquals(0, allocated("pt"));
    }

    @Test
    void shouldReclaimALostClient() throws Exception {
        loseAClient();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while ((allocated("ddr") != 0 || allocated("pt") != 0) && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(20);
        }
        assertEquals(0, allocated("ddr"), "the cleaner released the unreachable client's memory");
        assertEquals(0, allocated("pt"));
        assertTrue(vcmm.vcms().isEmpty());
    }

    /**
     * The lifetime rule: handles made through a client do not keep it alive (the VCMM's own registries reference
     * them, so their reachability says nothing); a client is released when it is closed or itself unreachable, and
     * its handles then fail with a clear error. A reachable client is never released.
     */
    @Test
    void shouldReleaseALostClientEvenWhileItsHandlesAreHeldAndFailTheirUseClearly() throws Exception {
        Reservation r = reservationOfALostClient();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!r.isReleased() && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(20);
        }
        assertTrue(r.isReleased(), "the unreachable client was released though its reservation handle is held");
        IllegalStateException e = assertThrows(IllegalStateException.class,
            () -> r.back(vcmm.physAlloc("ddr", MIB, ChunkPolicy.VCMM)));
        assertTrue(e.getMessage().contains("unreserve"), e.getMessage());
        assertTrue(gpu.translate(r.address()) instanceof WalkResult.PageFault, "no device reaches its memory");
    }

    @Test
    void shouldNeverReleaseAReachableClient() throws Exception {
        Client c = vcmm.client("kept");
        Vcm vcm = c.createVcm(0x1000_0000L, 64 * MIB);
        c.assoc(vcm, gpu).activate();
        Reservation r = c.reserve(vcm, MIB, ReservationAttributes.RW, MIB).back(c.physAlloc("ddr", MIB, ChunkPolicy.VCMM));
        for (int i = 0; i < 20; i++) {
            System.gc();
            Thread.sleep(5);
        }
        assertTrue(r.isBacked(), "a reachable client keeps what it made");
        assertFalse(c.isClosed());
        java.lang.ref.Reference.reachabilityFence(c);
    }

    private Reservation reservationOfALostClient() {
        Client c = vcmm.client("lost-with-handles");
        Vcm vcm = c.createVcm(0x1000_0000L, 64 * MIB);
        c.assoc(vcm, gpu).activate();
        return c.reserve(vcm, MIB, ReservationAttributes.RW, MIB).back(c.physAlloc("ddr", MIB, ChunkPolicy.VCMM));
    }

    private void loseAClient() {
        Client c = vcmm.client("lost");
        Vcm vcm = c.createVcm(0x1000_0000L, 64 * MIB);
        c.assoc(vcm, gpu).activate();
        c.reserve(vcm, MIB, ReservationAttributes.RW, MIB).back(c.physAlloc("ddr", MIB, ChunkPolicy.VCMM));
        assertEquals(MIB, allocated("ddr"));
    }

    @Test
    void shouldNotLeakWhenClosedWhileOtherThreadsCreate() throws Exception {
        for (int round = 0; round < 20; round++) {
            Client c = vcmm.client("racy");
            Vcm vcm = c.createVcm(0x1000_0000L + round * 0x1000_0000L, 64 * MIB);
            CountDownLatch go = new CountDownLatch(1);
            AtomicInteger refused = new AtomicInteger();
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        go.await();
                        for (int i = 0; i < 50; i++) {
                            PhysMem pm = c.physAlloc("ddr", 64 * 1024, ChunkPolicy.VCMM);
                            c.reserve(vcm, 64 * 1024, ReservationAttributes.RW, 4096).back(pm);
                        }
                    } catch (IllegalStateException e) {
                        refused.incrementAndGet(); // closed under us: the documented outcome
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }));
            }
            go.countDown();
            Thread.sleep(1);
            c.close();
            for (Thread t : threads) {
                t.join();
            }
            assertEquals(0, allocated("ddr"), "round " + round + ": everything made before the close was released");
            assertEquals(0, allocated("pt"));
        }
    }

    @Test
    void shouldFreeAReleasedClientsVcmOnceTheOthersAreDoneWithIt() {
        Client owner = vcmm.client("owner");
        Client guest = vcmm.client("guest");
        Vcm vcm = owner.createVcm(0x1000_0000L, 64 * MIB);
        Reservation g = guest.reserve(vcm, MIB, ReservationAttributes.RW, MIB);
        owner.close();
        assertFalse(vcm.isFreed(), "the guest still reserves in it");
        guest.close();
        assertTrue(vcm.isFreed(), "freed when its last user let go");
        assertTrue(g.isReleased());
        assertTrue(vcmm.vcms().isEmpty());
    }

    @Test
    void shouldFreeAReleasedClientsVcmWhenAnotherClientsLastAssociationGoes() {
        // found by VcmmProperties in a long run: the guest's close removed the association under the graph lock,
        // where the orphan sweep is skipped, and nothing swept afterwards
        Client owner = vcmm.client("owner");
        Client guest = vcmm.client("guest");
        Vcm vcm = owner.createVcm(0x1000_0000L, 64 * MIB);
        Association a = guest.assoc(vcm, gpu, AssociationMode.WHOLE);
        owner.close();
        assertFalse(vcm.isFreed(), "the guest's device is still associated with it");
        guest.close();
        assertTrue(a.isRemoved());
        assertTrue(vcm.isFreed(), "freed when its last association went");
        assertTrue(vcmm.vcms().isEmpty());
    }
}
