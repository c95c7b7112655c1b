package dev.vcmm.examples;

import dev.vcmm.ChunkPolicy;
import dev.vcmm.Device;
import dev.vcmm.MemoryType;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.Vcmm;
import dev.vcmm.ffm.HostBuffer;
import dev.vcmm.ffm.HostBuffers;
import dev.vcmm.ffm.HostSegments;
import dev.vcmm.pagetable.Arm64Lpae4kFormat;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The README's HOST examples, run: a "magic" ring buffer, a buffer that grows without copying, and a buffer the
 * CPU shares with a simulated device.
 */
class HostExamplesTest {

    static final long KIB = 1L << 10;
    static final long MIB = 1L << 20;

    Vcmm vcmm;

    @BeforeEach
    void open() {
        vcmm = Vcmm.builder()
            .memoryType(MemoryType.builder("ddr").base(0x8000_0000L).size(512 * MIB))
            .build();
    }

    @AfterEach
    void close() {
        vcmm.close();
    }

    // ---------------------------------------------------------------------------------------------
    // 1. the magic ring buffer: the same physical memory backed twice, back to back

    /** A byte ring whose reads and writes never wrap: the view is twice the capacity, and its halves alias. */
    static final class MagicRing implements AutoCloseable {
        final PhysMem memory;
        final Reservation first;
        final Reservation second;
        final Vcm space;
        final MemorySegment view;
        final long capacity;
        long head; // next byte to read, counts up forever
        long tail; // next byte to write

        MagicRing(Vcmm vcmm, long capacity) {
            this.capacity = capacity;
            space = vcmm.createHostVcm(2 * capacity);
            memory = vcmm.physAlloc("ddr", capacity, ChunkPolicy.of(64 * KIB));
            first = space.reserveAt(space.start(), capacity, ReservationAttributes.RW).back(memory);
            second = space.reserveAt(space.start() + capacity, capacity, ReservationAttributes.RW).back(memory);
            view = HostSegments.segment(space, space.start(), 2 * capacity);
        }

        /** Writes all of {@code data} in one copy, wherever the tail is. */
        void write(byte[] data) {
            if (tail + data.length - head > capacity) {
                throw new IllegalStateException("full");
            }
            MemorySegment.copy(data, 0, view, ValueLayout.JAVA_BYTE, tail % capacity, data.length);
            tail += data.length;
        }

        /** Reads {@code length} bytes in one copy, wherever the head is. */
        byte[] read(int length) {
            byte[] out = view.asSlice(head % capacity, length).toArray(ValueLayout.JAVA_BYTE);
            head += length;
            return out;
        }

        @Override
        public void close() {
            second.unback().unreserve();
            first.unback().unreserve();
            space.free();
            memory.free();
        }
    }

    @Test
    void magicRingBufferHalvesAlias() {
        try (MagicRing ring = new MagicRing(vcmm, 256 * KIB)) {
            MemorySegment v = ring.view;
            long n = ring.capacity;
            v.set(ValueLayout.JAVA_LONG, n - 8, 0x0102_0304_0506_0708L);
            assertEquals(0x0102_0304_0506_0708L, v.get(ValueLayout.JAVA_LONG, 2 * n - 8), "the first copy shows in the second");
            v.set(ValueLayout.JAVA_INT, n + 4, 77);
            assertEquals(77, v.get(ValueLayout.JAVA_INT, 4), "a write past the end of the first copy shows at its start");
            v.set(ValueLayout.JAVA_LONG_UNALIGNED, n - 4, -1L); // straddles the seam: 4 bytes at the end, 4 at the start
            assertEquals(-1, v.get(ValueLayout.JAVA_INT, 0));
            assertEquals(-1, v.get(ValueLayout.JAVA_INT, n - 4));

            // a stream of messages that keep crossing the end, each written and read in one piece
            List<byte[]> sent = new ArrayList<>();
            for (int i = 0; i < 2000; i++) {
                byte[] msg = ("message " + i + " " + "x".repeat(i % 997)).getBytes(StandardCharsets.US_ASCII);
                ring.write(msg);
                sent.add(msg);
                if (sent.size() > 50) {
                    byte[] expected = sent.removeFirst();
                    assertArrayEquals(expected, ring.read(expected.length));
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 2. a growable buffer: reserve a large range, back more chunks as it grows, never copy

    /** Grows in place: each step backs the next piece of a large HOST range; old bytes never move. */
    static final class GrowableBuffer implements AutoCloseable {
        final Vcmm vcmm;
        final Vcm space;
        final List<Reservation> pieces = new ArrayList<>();
        long capacity;
        MemorySegment view;

        GrowableBuffer(Vcmm vcmm, long maxCapacity) {
            this.vcmm = vcmm;
            this.space = vcmm.createHostVcm(maxCapacity); // address space only: no memory yet
        }

        MemorySegment grow(long by) {
            PhysMem more = vcmm.physAlloc("ddr", by, ChunkPolicy.HUGE);
            pieces.add(space.reserveAt(space.start() + capacity, by, ReservationAttributes.RW).back(more));
            capacity += by;
            view = HostSegments.segment(space, space.start(), capacity);
            return view;
        }

        @Override
        public void close() {
            for (Reservation r : pieces) {
                PhysMem pm = r.backingMemory();
                r.unback().unreserve();
                pm.free();
            }
            space.free();
        }
    }

    @Test
    void growableBufferGrowsWithoutCopying() {
        try (GrowableBuffer b = new GrowableBuffer(vcmm, 1L << 30)) {
            MemorySegment v = b.grow(2 * MIB);
            long address = v.address();
            v.set(ValueLayout.JAVA_LONG, 0, 42L);
            for (int i = 1; i <= 5; i++) {
                MemorySegment grown = b.grow(4 * MIB);
                assertEquals(address, grown.address(), "same address: nothing moved");
                assertEquals(42L, grown.get(ValueLayout.JAVA_LONG, 0), "old bytes in place, not copied");
                grown.set(ValueLayout.JAVA_LONG, grown.byteSize() - 8, i);
                assertEquals(42L, v.get(ValueLayout.JAVA_LONG, 0), "an older, shorter view still works");
            }
            assertEquals(22 * MIB, b.capacity);
            assertEquals(5L, b.view.get(ValueLayout.JAVA_LONG, b.capacity - 8));
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 3. a buffer shared with a simulated device

    @Test
    void bufferSharedWithADevice() {
        Device dsp = vcmm.device("dsp", Arm64Lpae4kFormat.INSTANCE);
        Vcm dspSpace = vcmm.createVcm(0x1000_0000L, 256 * MIB);
        vcmm.assoc(dspSpace, dsp).activate();

        try (HostBuffer buffer = HostBuffers.allocate(vcmm, vcmm.memoryType("ddr"), 8 * MIB, ChunkPolicy.HUGE)) {
            // the device sees the same physical chunks through its own IOMMU mapping
            Reservation dma = dspSpace.reserve(8 * MIB, ReservationAttributes.RW, 2 * MIB).back(buffer.physMem());
            MemorySegment cpu = buffer.segment();

            byte[] frame = "frame from the CPU".getBytes(StandardCharsets.US_ASCII);
            MemorySegment.copy(frame, 0, cpu, ValueLayout.JAVA_BYTE, 3 * MIB, frame.length);
            byte[] seen = new byte[frame.length];
            dsp.read(dma.address() + 3 * MIB, seen, 0, seen.length);
            assertArrayEquals(frame, seen, "the device DMA-reads the CPU's bytes");

            byte[] result = "result from the DSP".getBytes(StandardCharsets.US_ASCII);
            dsp.write(dma.address() + 5 * MIB, result, 0, result.length);
            assertArrayEquals(result, cpu.asSlice(5 * MIB, result.length).toArray(ValueLayout.JAVA_BYTE),
                "the CPU reads the device's bytes, no copy");

            dma.unback().unreserve(); // the device lets go before the buffer returns the memory
        }
        assertThrows(IllegalArgumentException.class, () -> HostBuffers.allocate(vcmm, vcmm.memoryType("ddr"), -1, ChunkPolicy.HUGE));
    }
}
