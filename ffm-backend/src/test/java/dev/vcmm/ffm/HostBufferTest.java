package dev.vcmm.ffm;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.MemoryType;
import dev.vcmm.Vcmm;
import dev.vcmm.VcmmBusyException;
import dev.vcmm.testing.TestGraphs;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** {@link HostBuffer}'s lifetime: a close refused by a view in use changes nothing, and a later close succeeds. */
class HostBufferTest {

    static final long MIB = 1L << 20;

    Vcmm vcmm;
    MemoryType ddr;

    @BeforeEach
    void open() {
        vcmm = TestGraphs.ddrAndTables(64 * MIB);
        assumeTrue(vcmm.hostUnavailableReason().isEmpty(), () -> "HOST VCMs unavailable: " + vcmm.hostUnavailableReason());
        ddr = vcmm.memoryType("ddr");
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    @Test
    void shouldNeverShowANewBufferAPreviousBuffersBytes() {
        for (long length : new long[] {8 * MIB, 192L << 10, 4096}) {
            ChunkPolicy policy = length >= 2 * MIB ? ChunkPolicy.HUGE : ChunkPolicy.of(4096);
            HostBuffer first = HostBuffers.allocate(vcmm, ddr, length, policy);
            first.segment().fill((byte) 0x5A);
            var chunks = first.physMem().chunks();
            first.close();
            try (HostBuffer second = HostBuffers.allocate(vcmm, ddr, length, policy)) {
                assertEquals(chunks, second.physMem().chunks(), "the same blocks, handed to a new owner");
                MemorySegment s = second.segment();
                long found = s.mismatch(MemorySegment.ofArray(new byte[(int) length]));
                assertEquals(-1L, found, () -> "length=" + length + ": byte " + found + " is the previous buffer's 0x5A");
            }
        }
    }

    @Test
    @Timeout(60)
    void shouldRefuseCloseWhileAViewIsHeldChangeNothingAndCloseLater() throws Exception {
        long free0 = ddr.stats().freeBytes();
        HostBuffer b = HostBuffers.allocate(vcmm, ddr, 4 * MIB, ChunkPolicy.HUGE);
        MemorySegment s = b.segment();
        s.set(ValueLayout.JAVA_LONG, 4096, 0x0BAD_CAFEL);
        int vcms = vcmm.vcms().size();
        try (NativeHold hold = new NativeHold(s)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, b::close);
            assertTrue(e.getMessage().contains("busy"), e.getMessage());
            // nothing changed: open, mapped, readable, still holding its memory and its VCM
            assertFalse(b.isClosed(), "a refused close leaves the buffer open");
            assertEquals(0x0BAD_CAFEL, b.segment().get(ValueLayout.JAVA_LONG, 4096));
            assertTrue(b.reservation().isBacked());
            assertFalse(b.physMem().isFreed());
            assertEquals(vcms, vcmm.vcms().size());
            assertEquals(free0 - 4 * MIB, ddr.stats().freeBytes());
        }
        b.close(); // the native call returned: the retry succeeds
        assertTrue(b.isClosed());
        assertTrue(b.physMem().isFreed(), "the chunks were freed, not leaked");
        assertEquals(free0, ddr.stats().freeBytes(), "every byte is back in the pool");
        assertEquals(vcms - 1, vcmm.vcms().size(), "the HOST VCM is gone");
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_LONG, 4096));
        b.close(); // idempotent after success
        assertTrue(b.isClosed());
    }

    @Test
    void shouldRefuseCloseWhileTheMemoryBacksAnotherReservationAndChangeNothing() {
        long free0 = ddr.stats().freeBytes();
        HostBuffer b = HostBuffers.allocate(vcmm, ddr, 2 * MIB, ChunkPolicy.HUGE);
        b.segment().set(ValueLayout.JAVA_LONG, 0, 77L);
        var other = vcmm.createHostVcm(2 * MIB, 2 * MIB);
        var r = other.reserveAt(other.start(), 2 * MIB, dev.vcmm.ReservationAttributes.RW);
        r.back(b.physMem());
        VcmmBusyException e = assertThrows(VcmmBusyException.class, b::close);
        assertTrue(e.getMessage().contains("unback"), e.getMessage());
        assertFalse(b.isClosed());
        assertEquals(77L, b.segment().get(ValueLayout.JAVA_LONG, 0), "still mapped: nothing changed");
        assertTrue(b.reservation().isBacked());
        r.unback();
        r.unreserve();
        other.free();
        b.close();
        assertTrue(b.isClosed());
        assertEquals(free0, ddr.stats().freeBytes());
    }
}
