package dev.vcmm.spi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.ReadOnlyBufferException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The contract every {@link PhysicalMemory} keeps, in the style of JCTools' {@code QueueSanityTest}:
 * an implementation's test extends this class and says how to {@link #create(long, long) create} one.
 *
 * <p>Each test gets a fresh 1 MiB memory at {@link #BASE}; a few create their own. Addresses are
 * chosen to start at, end at, and straddle 64 KiB boundaries (the heap implementation's pages) and
 * the memory's ends.
 */
public abstract class PhysicalMemoryContractTest {

    /** Base of the memory each test gets: 1 GiB, so that address 0 and small addresses are outside. */
    protected static final long BASE = 0x4000_0000L;

    /** Size of the memory each test gets: 1 MiB. */
    protected static final long SIZE = 1L << 20;

    /** A stride that crosses the heap implementation's page boundaries. */
    private static final long K64 = 64 * 1024;

    /** Bytes around a bounds test that must not change. */
    private static final int GUARD = 64;

    protected PhysicalMemory mem;

    /**
     * Creates a zero-filled memory covering {@code [base, base + size)}.
     *
     * @param base a multiple of 4096
     * @param size a positive multiple of 4096
     */
    protected abstract PhysicalMemory create(long base, long size);

    @BeforeEach
    void openMemory() {
        mem = create(BASE, SIZE);
    }

    @AfterEach
    void closeMemory() {
        mem.close();
    }

    // ---------------------------------------------------------------- basics

    @Test
    void shouldStoreFindAndClearRunsOfWords() {
        long at = BASE + 0x2000;
        mem.spLongs(at, 5, 0x1000, 0x1000);
        for (int i = 0; i < 5; i++) {
            assertEquals(0x1000L + i * 0x1000L, mem.lpLong(at + 8L * i));
        }
        assertEquals(0, mem.lpLong(at + 40), "nothing past the run");
        assertEquals(-1, mem.findNonZeroLong(at + 40, 8));
        assertEquals(2, mem.findNonZeroLong(at - 16, 8));
        assertEquals(5, mem.clearLongs(at - 16, 10), "counts the non-zero words it clears");
        assertEquals(-1, mem.findNonZeroLong(at, 5));

        mem.spLong(at + 24, 7);
        assertEquals(3, mem.spLongsIfZero(at, 6, 0x10, 1), "stops at the first live word");
        assertEquals(0x10, mem.lpLong(at));
        assertEquals(0x12, mem.lpLong(at + 16));
        assertEquals(7, mem.lpLong(at + 24), "the live word is untouched");
        assertEquals(0, mem.lpLong(at + 32), "and so is everything after it");
        assertEquals(-1, mem.spLongsIfZero(at + 32, 2, 5, 5));
        assertEquals(10, mem.lpLong(at + 40));

        long ints = BASE + 0x3000;
        mem.spInts(ints, 4, 100, -1);
        assertEquals(97, mem.lpInt(ints + 12));
        assertEquals(1, mem.findNonZeroInt(ints - 4, 3));
        assertEquals(4, mem.clearInts(ints, 8));
        assertEquals(-1, mem.findNonZeroInt(ints, 4));
        assertThrows(IllegalArgumentException.class, () -> mem.spLongs(BASE + SIZE - 8, 2, 1, 1), "past the end");
        assertThrows(IllegalArgumentException.class, () -> mem.clearLongs(BASE + 4, 1), "misaligned");
    }

    @Test
    void shouldReportBaseAndSize() {
        assertEquals(BASE, mem.base());
        assertEquals(SIZE, mem.size());
        assertFalse(mem.isClosed());
    }

    @Test
    void shouldReadZeroFromMemoryNeverWritten() {
        for (long pa : new long[] {BASE, BASE + K64, BASE + SIZE - 8}) {
            assertEquals(0L, mem.lpLong(pa));
            assertEquals(0L, mem.laLong(pa));
            assertEquals(0, mem.lpInt(pa + 4));
            assertEquals(0, mem.laInt(pa));
        }
        byte[] all = new byte[(int) SIZE];
        java.util.Arrays.fill(all, (byte) 0x5A);
        mem.copyOut(BASE, all, 0, all.length);
        assertArrayEquals(new byte[(int) SIZE], all);
    }

    // ---------------------------------------------------------------- 64-bit words

    @ParameterizedTest(name = "offset {0}")
    @ValueSource(longs = {0, 8, K64 - 8, K64, 3 * K64 + 40, SIZE - 8})
    void shouldRoundTripLongsInEveryMode(long offset) {
        long pa = BASE + offset;
        long[] values = {0x0123_4567_89AB_CDEFL, -1L, Long.MIN_VALUE, Long.MAX_VALUE, 0L, 0xFEDC_BA98_7654_3210L};
        for (long v : values) {
            mem.spLong(pa, v);
            assertEquals(v, mem.lpLong(pa), "sp/lp");
            assertEquals(v, mem.laLong(pa), "sp/la");
            mem.soLong(pa, ~v);
            assertEquals(~v, mem.lpLong(pa), "so/lp");
            assertEquals(~v, mem.laLong(pa), "so/la");
        }
    }

    @Test
    void shouldKeepNeighbouringLongsApart() {
        long pa = BASE + K64 - 8; // the last word of one heap page and the first of the next
        mem.spLong(pa, 1L);
        mem.soLong(pa + 8, 2L);
        mem.spLong(pa - 8, 3L);
        assertEquals(3L, mem.lpLong(pa - 8));
        assertEquals(1L, mem.lpLong(pa));
        assertEquals(2L, mem.lpLong(pa + 8));
        assertEquals(0L, mem.lpLong(pa + 16));
    }

    @Test
    void shouldCasLongOnlyWhenExpectedMatches() {
        long pa = BASE + 2 * K64 + 16;
        assertTrue(mem.casLong(pa, 0L, 42L), "cas from the initial zero");
        assertEquals(42L, mem.lpLong(pa));
        assertFalse(mem.casLong(pa, 41L, 7L), "cas with a stale expected value");
        assertEquals(42L, mem.laLong(pa), "a failed cas changes nothing");
        assertTrue(mem.casLong(pa, 42L, -1L));
        assertEquals(-1L, mem.lpLong(pa));
        assertFalse(mem.casLong(pa, 0xFFFF_FFFFL, 0L), "the whole 64 bits are compared");
        assertEquals(-1L, mem.lpLong(pa));
        assertEquals(0L, mem.lpLong(pa + 8), "the neighbour is untouched");
    }

    // ---------------------------------------------------------------- 32-bit words

    @ParameterizedTest(name = "offset {0}")
    @ValueSource(longs = {0, 4, K64 - 4, K64, 5 * K64 + 12, SIZE - 4})
    void shouldRoundTripIntsInEveryMode(long offset) {
        long pa = BASE + offset;
        int[] values = {0x89AB_CDEF, -1, Integer.MIN_VALUE, Integer.MAX_VALUE, 0, 0x7654_3210};
        for (int v : values) {
            mem.spInt(pa, v);
            assertEquals(v, mem.lpInt(pa), "sp/lp");
            assertEquals(v, mem.laInt(pa), "sp/la");
            mem.soInt(pa, ~v);
            assertEquals(~v, mem.lpInt(pa), "so/lp");
            assertEquals(~v, mem.laInt(pa), "so/la");
        }
    }

    @Test
    void shouldComposeTwoIntsIntoOneLittleEndianLong() {
        long pa = BASE + 4 * K64;
        mem.spInt(pa, 0x1111_2222);
        mem.soInt(pa + 4, 0x3333_4444);
        assertEquals(0x3333_4444_1111_2222L, mem.lpLong(pa), "the int at the lower address is the low half");
        mem.spLong(pa, 0xAAAA_BBBB_CCCC_DDDDL);
        assertEquals(0xCCCC_DDDD, mem.lpInt(pa));
        assertEquals(0xAAAA_BBBB, mem.laInt(pa + 4));
        mem.spInt(pa + 4, -1);
        assertEquals(0xCCCC_DDDD, mem.lpInt(pa), "a store to one half leaves the other");
        assertEquals(0xFFFF_FFFF_CCCC_DDDDL, mem.lpLong(pa));
    }

    @Test
    void shouldCasIntOnlyWhenExpectedMatchesAndLeaveTheOtherHalf() {
        long pa = BASE + 6 * K64 + 8;
        mem.spLong(pa, 0x7777_7777_0000_0005L);
        assertFalse(mem.casInt(pa, 4, 9), "stale expected value");
        assertEquals(0x7777_7777_0000_0005L, mem.lpLong(pa), "a failed cas changes nothing");
        assertTrue(mem.casInt(pa, 5, 9));
        assertEquals(0x7777_7777_0000_0009L, mem.lpLong(pa));
        assertTrue(mem.casInt(pa + 4, 0x7777_7777, -2));
        assertEquals(0xFFFF_FFFE_0000_0009L, mem.lpLong(pa));
        assertFalse(mem.casInt(pa + 4, 9, 0), "the low half's value does not satisfy the high half's cas");
        assertEquals(-2, mem.laInt(pa + 4));
    }

    // ---------------------------------------------------------------- byte order

    @Test
    void shouldStoreLongsLittleEndian() {
        long pa = BASE + K64 + 24;
        mem.spLong(pa, 0x0102_0304_0506_0708L);
        byte[] bytes = new byte[8];
        mem.copyOut(pa, bytes, 0, 8);
        assertArrayEquals(new byte[] {8, 7, 6, 5, 4, 3, 2, 1}, bytes);
        assertEquals(0x0506_0708, mem.lpInt(pa));
        assertEquals(0x0102_0304, mem.lpInt(pa + 4));
    }

    @Test
    void shouldStoreIntsLittleEndian() {
        long pa = BASE + 12;
        mem.soInt(pa, 0x0A0B_0C0D);
        byte[] bytes = new byte[4];
        mem.copyOut(pa, bytes, 0, 4);
        assertArrayEquals(new byte[] {0x0D, 0x0C, 0x0B, 0x0A}, bytes);
    }

    @Test
    void shouldReadCopiedInBytesAsLittleEndianWords() {
        long pa = BASE + 2 * K64 - 8;
        mem.copyIn(new byte[] {(byte) 0xEF, (byte) 0xCD, (byte) 0xAB, (byte) 0x89, 0x67, 0x45, 0x23, 0x01}, 0, pa, 8);
        assertEquals(0x0123_4567_89AB_CDEFL, mem.lpLong(pa));
        assertEquals(0x89AB_CDEF, mem.laInt(pa));
    }

    // ---------------------------------------------------------------- bulk copies

    @ParameterizedTest(name = "offset {0}")
    @ValueSource(longs = {0, 1, 7, K64 - 13, 2 * K64 - 1, SIZE - 300})
    void shouldCopyArraysInAndOutAtAnyOffsetAndLength(long offset) {
        long pa = BASE + offset;
        SplittableRandom random = new SplittableRandom(offset);
        byte[] src = randomBytes(random, 300 + 17);
        mem.copyIn(src, 17, pa, 300);
        byte[] dst = new byte[300 + 33];
        mem.copyOut(pa, dst, 33, 300);
        assertArrayEquals(java.util.Arrays.copyOfRange(src, 17, 317), java.util.Arrays.copyOfRange(dst, 33, 333));
        for (int i = 0; i < 33; i++) {
            assertEquals(0, dst[i], "copyOut wrote before dstOffset");
        }
        if (offset > 0) {
            assertEquals(0, readByte(pa - 1), "copyIn wrote before pa");
        }
        if (offset + 300 < SIZE) {
            assertEquals(0, readByte(pa + 300), "copyIn wrote after the end");
        }
    }

    @Test
    void shouldCopyAcrossManyPages() {
        long pa = BASE + 3;
        byte[] src = randomBytes(new SplittableRandom(7), (int) (5 * K64 + 11));
        mem.copyIn(src, 0, pa, src.length);
        byte[] dst = new byte[src.length];
        mem.copyOut(pa, dst, 0, dst.length);
        assertArrayEquals(src, dst);
    }

    @Test
    void shouldCopyZeroBytes() {
        mem.copyIn(new byte[0], 0, BASE + SIZE, 0);
        mem.copyOut(BASE + SIZE, new byte[0], 0, 0);
        mem.fill(BASE + SIZE, 0, (byte) 1);
        mem.copyIn(ByteBuffer.allocate(0), BASE + SIZE);
        assertEquals(0L, mem.lpLong(BASE + SIZE - 8));
    }

    @ParameterizedTest(name = "direct={0}")
    @ValueSource(booleans = {false, true})
    void shouldCopyByteBuffersInAndOutConsumingTheirRemainingBytes(boolean direct) {
        long pa = BASE + K64 - 5;
        byte[] payload = randomBytes(new SplittableRandom(11), 100);
        ByteBuffer src = allocate(direct, 120).order(ByteOrder.BIG_ENDIAN);
        src.position(10).put(payload).flip().position(10); // remaining: the 100 payload bytes
        mem.copyIn(src, pa);
        assertEquals(110, src.position(), "copyIn consumes the buffer");
        assertEquals(110, src.limit());
        assertEquals(ByteOrder.BIG_ENDIAN, src.order(), "copyIn leaves the buffer's order");

        ByteBuffer dst = allocate(direct, 130);
        dst.position(20).limit(120);
        mem.copyOut(pa, dst);
        assertEquals(120, dst.position(), "copyOut fills the buffer");
        dst.clear();
        byte[] got = new byte[100];
        dst.get(20, got);
        assertArrayEquals(payload, got);
        assertEquals(0, dst.get(19), "copyOut wrote before the position");
        assertEquals(0, dst.get(120), "copyOut wrote past the limit");
        assertEquals(0, readByte(pa + 100), "copyIn wrote past the remaining bytes");
    }

    @Test
    void shouldCopyInFromReadOnlyBufferAndRefuseReadOnlyDestination() {
        ByteBuffer src = ByteBuffer.wrap(new byte[] {1, 2, 3, 4, 5, 6, 7, 8}).asReadOnlyBuffer();
        mem.copyIn(src, BASE);
        assertEquals(0x0807_0605_0403_0201L, mem.lpLong(BASE));
        ByteBuffer readOnly = ByteBuffer.allocate(8).asReadOnlyBuffer();
        assertThrows(ReadOnlyBufferException.class, () -> mem.copyOut(BASE, readOnly));
        assertEquals(0, readOnly.position());
    }

    @Test
    void shouldRejectArrayRangesOutsideTheArrayAndChangeNothing() {
        byte[] small = new byte[8];
        assertThrows(IndexOutOfBoundsException.class, () -> mem.copyIn(small, 4, BASE, 8));
        assertThrows(IndexOutOfBoundsException.class, () -> mem.copyIn(small, -1, BASE, 4));
        assertThrows(IndexOutOfBoundsException.class, () -> mem.copyOut(BASE, small, 6, 3));
        java.util.Arrays.fill(small, (byte) 9);
        assertThrows(IndexOutOfBoundsException.class, () -> mem.copyIn(small, 1, BASE, 8));
        assertEquals(0L, mem.lpLong(BASE));
    }

    // ---------------------------------------------------------------- fill

    @Test
    void shouldFillExactlyTheRange() {
        long pa = BASE + K64 - 3;
        int length = (int) K64 + 10;
        mem.fill(pa, length, (byte) 0xA5);
        byte[] got = new byte[length + 2];
        mem.copyOut(pa - 1, got, 0, got.length);
        assertEquals(0, got[0], "byte before the range");
        assertEquals(0, got[length + 1], "byte after the range");
        for (int i = 1; i <= length; i++) {
            assertEquals((byte) 0xA5, got[i], "byte " + i);
        }
        assertEquals(0xA5A5_A5A5_A5A5_A5A5L, mem.lpLong(BASE + K64));
    }

    @Test
    void shouldFillWithZeroOverWrittenMemory() {
        mem.spLong(BASE + 64, -1L);
        mem.spLong(BASE + 72, -1L);
        mem.fill(BASE + 66, 9, (byte) 0);
        assertEquals(0x0000_0000_0000_FFFFL, mem.lpLong(BASE + 64));
        assertEquals(0xFFFF_FFFF_FF00_0000L, mem.lpLong(BASE + 72), "bytes 72..74 zeroed");
    }

    @Test
    void shouldFillTheWholeMemory() {
        mem.fill(BASE, SIZE, (byte) 1);
        assertEquals(0x0101_0101_0101_0101L, mem.lpLong(BASE));
        assertEquals(0x0101_0101_0101_0101L, mem.laLong(BASE + SIZE - 8));
        mem.fill(BASE, SIZE, (byte) 0);
        assertEquals(0L, mem.lpLong(BASE + SIZE / 2));
    }

    /** Writes a recognisable non-zero byte at every offset of the memory. */
    private void paintAll() {
        byte[] page = new byte[4096];
        for (long off = 0; off < SIZE; off += page.length) {
            for (int i = 0; i < page.length; i++) {
                page[i] = (byte) (((off + i) * 131 + 7) | 1);
            }
            mem.copyIn(page, 0, BASE + off, page.length);
        }
    }

    /** Asserts every byte in {@code [from, to)} is zero and every other byte still painted. */
    private void assertZeroExactly(long from, long to) {
        byte[] all = new byte[(int) SIZE];
        mem.copyOut(BASE, all, 0, all.length);
        for (int i = 0; i < all.length; i++) {
            long pa = BASE + i;
            byte want = pa >= from && pa < to ? 0 : (byte) ((i * 131L + 7) | 1);
            if (all[i] != want) {
                fail(String.format("byte at 0x%x is %d, expected %d (zeroed [0x%x, 0x%x))", pa, all[i], want, from, to));
            }
        }
        MemorySegment whole = mem.segment();
        if (whole != null) { // the same bytes through the segment view
            for (long pa = from; pa < to; pa += 4093) {
                assertEquals(0, whole.get(ValueLayout.JAVA_BYTE, pa - BASE), "segment view at " + Long.toHexString(pa));
            }
        }
    }

    @Test
    void shouldZeroASmallRangeAndNothingAroundIt() {
        paintAll();
        mem.zero(BASE + K64 - 3, 11);
        assertZeroExactly(BASE + K64 - 3, BASE + K64 + 8);
    }

    @Test
    void shouldZeroALargeUnalignedRangeAndNothingAroundIt() {
        paintAll(); // the range has partial pages (of every size: 4 KiB, 64 KiB) at both ends
        long from = BASE + K64 - 4095;
        long to = BASE + SIZE - K64 + 5;
        mem.zero(from, to - from);
        assertZeroExactly(from, to);
    }

    @Test
    void shouldZeroLargeAlignedRangesAndReadThemAsZeroAfterRewrites() {
        paintAll();
        mem.zero(BASE + SIZE / 2, SIZE / 2);
        assertZeroExactly(BASE + SIZE / 2, BASE + SIZE);
        mem.spLong(BASE + SIZE - 8, 42L); // the zeroed memory is ordinary memory again
        assertEquals(42L, mem.laLong(BASE + SIZE - 8));
        mem.zero(BASE, SIZE);
        byte[] all = new byte[(int) SIZE];
        mem.copyOut(BASE, all, 0, all.length);
        assertArrayEquals(new byte[(int) SIZE], all, "all of it reads as zero");
        mem.zero(BASE + SIZE, 0); // empty at the end: fine, changes nothing
    }

    // ---------------------------------------------------------------- bounds

    @Test
    void shouldRejectWordsOutsideTheMemoryNamingTheAddress() {
        long[] outside = {
            BASE - 8, BASE - 4, 0L, BASE + SIZE, BASE + SIZE + 8, Long.MIN_VALUE, Long.MAX_VALUE & ~7L, -8L,
        };
        for (long pa : outside) {
            assertWordAccessRejected(pa);
        }
    }

    @Test
    void shouldRejectALongThatCrossesTheEnd() {
        // Aligned to 4 but not to 8, so a long access is misaligned and an int access is inside: check
        // that the long's last byte is what counts at the very end.
        long last = BASE + SIZE - 4;
        mem.spInt(last, 7);
        assertEquals(7, mem.lpInt(last));
        assertBoundsRejected(last, () -> mem.lpLong(last));
        assertBoundsRejected(last, () -> mem.spLong(last, 1L));
    }

    @Test
    void shouldRejectRangesOutsideTheMemoryNamingTheAddress() {
        record Range(long pa, long length) { }
        List<Range> ranges = List.of(
            new Range(BASE - 1, 1), new Range(BASE - 8, 16), new Range(BASE + SIZE - 8, 9),
            new Range(BASE + SIZE, 1), new Range(BASE, SIZE + 1), new Range(BASE + 1, SIZE),
            new Range(BASE, -1), new Range(BASE + 16, Integer.MIN_VALUE),
            new Range(Long.MAX_VALUE, 2), new Range(Long.MAX_VALUE - 1, Long.MAX_VALUE),
            new Range(Long.MIN_VALUE, 8), new Range(BASE + 8, Long.MAX_VALUE));
        for (Range r : ranges) {
            long pa = r.pa();
            long length = r.length();
            byte[] array = new byte[1024];
            assertBoundsRejected(pa, () -> mem.fill(pa, length, (byte) 3));
            assertBoundsRejected(pa, () -> mem.zero(pa, length));
            if (length == (int) length && length <= array.length) {
                int n = (int) length;
                assertBoundsRejected(pa, () -> mem.copyIn(array, 0, pa, n));
                assertBoundsRejected(pa, () -> mem.copyOut(pa, array, 0, n));
                if (n >= 0) {
                    assertBoundsRejected(pa, () -> mem.copyIn(ByteBuffer.allocate(n), pa));
                    ByteBuffer direct = ByteBuffer.allocateDirect(n);
                    assertBoundsRejected(pa, () -> mem.copyOut(pa, direct));
                    assertEquals(0, direct.position(), "a rejected copyOut leaves the buffer");
                }
            }
        }
    }

    @Test
    void shouldLeaveBufferUnconsumedWhenCopyInIsRejected() {
        ByteBuffer src = ByteBuffer.allocate(16);
        assertBoundsRejected(BASE + SIZE - 8, () -> mem.copyIn(src, BASE + SIZE - 8));
        assertEquals(0, src.position());
    }

    @ParameterizedTest(name = "misalignment {0}")
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7})
    void shouldRejectMisalignedLongs(int misalignment) {
        long pa = BASE + K64 + misalignment;
        assertMisaligned(pa, () -> mem.lpLong(pa));
        assertMisaligned(pa, () -> mem.laLong(pa));
        assertMisaligned(pa, () -> mem.spLong(pa, -1L));
        assertMisaligned(pa, () -> mem.soLong(pa, -1L));
        assertMisaligned(pa, () -> mem.casLong(pa, 0L, -1L));
        if ((misalignment & 3) != 0) {
            assertMisaligned(pa, () -> mem.lpInt(pa));
            assertMisaligned(pa, () -> mem.laInt(pa));
            assertMisaligned(pa, () -> mem.spInt(pa, -1));
            assertMisaligned(pa, () -> mem.soInt(pa, -1));
            assertMisaligned(pa, () -> mem.casInt(pa, 0, -1));
        }
    }

    // ---------------------------------------------------------------- close

    @Test
    void shouldFailEveryAccessAfterClose() {
        mem.spLong(BASE, 5L);
        mem.close();
        assertTrue(mem.isClosed());
        for (Map.Entry<String, Consumer<PhysicalMemory>> op : everyAccess().entrySet()) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> op.getValue().accept(mem), op.getKey());
            assertTrue(e.getMessage().contains("closed"), op.getKey() + ": " + e.getMessage());
        }
        assertEquals(BASE, mem.base(), "base and size stay readable");
        assertEquals(SIZE, mem.size());
    }

    @Test
    void shouldCloseIdempotently() {
        mem.close();
        mem.close();
        assertTrue(mem.isClosed());
        assertThrows(IllegalStateException.class, () -> mem.lpLong(BASE));
    }

    @Test
    @Timeout(30)
    void shouldCloseOnceWhenManyThreadsCloseTogether() throws Exception {
        runConcurrently(8, t -> mem.close());
        assertTrue(mem.isClosed());
    }

    // ---------------------------------------------------------------- size

    @Test
    void shouldHoldAMemoryFarLargerThanTouchedCheaply() {
        long base = 0x8000_0000L;
        long size = 64L << 30; // 64 GiB: only the words touched may cost memory
        try (PhysicalMemory big = create(base, size)) {
            assertEquals(size, big.size());
            List<Long> touched = new ArrayList<>();
            for (long pa = base; pa < base + size; pa += 3L << 30) { // 22 words, 3 GiB apart
                touched.add(pa + 8 * (pa >>> 30));
            }
            touched.add(base + size - 8);
            for (long pa : touched) {
                big.soLong(pa, pa ^ 0x5555_5555_5555_5555L);
            }
            for (long pa : touched) {
                assertEquals(pa ^ 0x5555_5555_5555_5555L, big.laLong(pa), "0x" + Long.toHexString(pa));
                if (pa + 8 < base + size) {
                    assertEquals(0L, big.lpLong(pa + 8), "the next word is untouched");
                }
            }
            assertEquals(0L, big.lpLong(base + size / 2 + 4096), "a word never written");
            assertThrows(IllegalArgumentException.class, () -> big.lpLong(base + size));
        }
    }

    // ---------------------------------------------------------------- concurrency

    @Test
    @Timeout(120)
    void shouldCountExactlyWithContendedCasLongIncrements() throws Exception {
        int threads = 8; // four per core on the two-core build machine: real preemption and contention
        int increments = 50_000;
        long shared = BASE + K64 - 8;
        long distinct = BASE + K64; // thread t owns the word at distinct + 8t, next to the others
        runConcurrently(threads, t -> {
            long own = distinct + 8L * t;
            for (int i = 0; i < increments; i++) {
                long v;
                do {
                    v = mem.laLong(shared);
                } while (!mem.casLong(shared, v, v + 1));
                long mine = mem.lpLong(own);
                assertTrue(mem.casLong(own, mine, mine + 1), "no one else writes this word");
            }
        });
        assertEquals((long) threads * increments, mem.laLong(shared));
        for (int t = 0; t < threads; t++) {
            assertEquals(increments, mem.laLong(distinct + 8L * t), "thread " + t);
        }
    }

    @Test
    @Timeout(120)
    void shouldNotLoseIntUpdatesToTheOtherHalfOfTheSameLong() throws Exception {
        // Threads 0..3 CAS-increment the low half, 4..7 the high half of one long; in the next long
        // thread 0 counts with plain stores into the low half while the others CAS the high half.
        int threads = 8;
        int increments = 50_000;
        long pa = BASE + 2 * K64;
        runConcurrently(threads, t -> {
            long half = pa + (t < 4 ? 0 : 4);
            for (int i = 0; i < increments; i++) {
                int v;
                do {
                    v = mem.laInt(half);
                } while (!mem.casInt(half, v, v + 1));
                if (t == 0) {
                    mem.spInt(pa + 8, mem.lpInt(pa + 8) + 1);
                } else if (t == 1) {
                    mem.soInt(pa + 16, mem.lpInt(pa + 16) + 1);
                } else {
                    int w;
                    do {
                        w = mem.lpInt(pa + 12);
                    } while (!mem.casInt(pa + 12, w, w + 1));
                    int x;
                    do {
                        x = mem.lpInt(pa + 20);
                    } while (!mem.casInt(pa + 20, x, x + 1));
                }
            }
        });
        assertEquals(4 * increments, mem.laInt(pa));
        assertEquals(4 * increments, mem.laInt(pa + 4));
        assertEquals(increments, mem.laInt(pa + 8), "plain stores by their only writer");
        assertEquals((threads - 2) * increments, mem.laInt(pa + 12));
        assertEquals(increments, mem.laInt(pa + 16), "release stores by their only writer");
        assertEquals((threads - 2) * increments, mem.laInt(pa + 20));
    }

    @Test
    @Timeout(60)
    void shouldPublishPlainWritesWithAReleaseStoreSeenByAnAcquireLoad() throws Exception {
        // A ping-pong on one flag word: odd 2r-1 = "round r's data is ready", even 2r = "consumed".
        int rounds = 20_000;
        long data = BASE + 3 * K64;
        long flag = BASE + 5 * K64 + 8;
        runConcurrently(2, t -> {
            for (long r = 1; r <= rounds; r++) {
                long awaited = t == 0 ? 2 * r - 2 : 2 * r - 1;
                while (mem.laLong(flag) != awaited) {
                    Thread.onSpinWait();
                }
                if (t == 0) {
                    mem.spLong(data, r * 31);
                    mem.spInt(data + 8, (int) r);
                } else {
                    assertEquals(r * 31, mem.lpLong(data), "round " + r);
                    assertEquals((int) r, mem.lpInt(data + 8), "round " + r);
                }
                mem.soLong(flag, awaited + 1);
            }
        });
        assertEquals(2L * rounds, mem.laLong(flag));
    }

    // ---------------------------------------------------------------- helpers

    private void assertWordAccessRejected(long pa) {
        assertBoundsRejected(pa, () -> mem.lpLong(pa));
        assertBoundsRejected(pa, () -> mem.laLong(pa));
        assertBoundsRejected(pa, () -> mem.spLong(pa, -1L));
        assertBoundsRejected(pa, () -> mem.soLong(pa, -1L));
        assertBoundsRejected(pa, () -> mem.casLong(pa, 0L, -1L));
        assertBoundsRejected(pa, () -> mem.lpInt(pa));
        assertBoundsRejected(pa, () -> mem.laInt(pa));
        assertBoundsRejected(pa, () -> mem.spInt(pa, -1));
        assertBoundsRejected(pa, () -> mem.soInt(pa, -1));
        assertBoundsRejected(pa, () -> mem.casInt(pa, 0, -1));
    }

    /** Asserts {@code op} throws an IAE naming {@code pa} in hex and leaves both ends of the memory as they were. */
    private void assertBoundsRejected(long pa, org.junit.jupiter.api.function.Executable op) {
        byte[] head = snapshot(BASE);
        byte[] tail = snapshot(BASE + SIZE - GUARD);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, op, () -> "pa=0x" + Long.toHexString(pa));
        assertTrue(e.getMessage().contains(Long.toHexString(pa)), "message names the address: " + e.getMessage());
        assertArrayEquals(head, snapshot(BASE), "a rejected access changed the start of the memory");
        assertArrayEquals(tail, snapshot(BASE + SIZE - GUARD), "a rejected access changed the end of the memory");
    }

    private void assertMisaligned(long pa, org.junit.jupiter.api.function.Executable op) {
        long aligned = pa & ~7L;
        mem.spLong(aligned, 0x1122_3344_5566_7788L);
        mem.spLong(aligned + 8, 0x99AA_BBCC_DDEE_FF00L);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, op);
        assertTrue(e.getMessage().contains(Long.toHexString(pa)), "message names the address: " + e.getMessage());
        assertEquals(0x1122_3344_5566_7788L, mem.lpLong(aligned), "a misaligned access changed memory");
        assertEquals(0x99AA_BBCC_DDEE_FF00L, mem.lpLong(aligned + 8), "a misaligned access changed memory");
    }

    private byte[] snapshot(long pa) {
        byte[] b = new byte[GUARD];
        mem.copyOut(pa, b, 0, GUARD);
        return b;
    }

    private byte readByte(long pa) {
        byte[] b = new byte[1];
        mem.copyOut(pa, b, 0, 1);
        return b[0];
    }

    private static byte[] randomBytes(SplittableRandom random, int n) {
        byte[] b = new byte[n];
        random.nextBytes(b);
        for (int i = 0; i < n; i++) {
            if (b[i] == 0) {
                b[i] = 1; // so that a byte not copied (still zero) shows
            }
        }
        return b;
    }

    private static ByteBuffer allocate(boolean direct, int capacity) {
        return direct ? ByteBuffer.allocateDirect(capacity) : ByteBuffer.allocate(capacity);
    }

    /** Every access method, for the closed-memory test. */
    private static Map<String, Consumer<PhysicalMemory>> everyAccess() {
        Map<String, Consumer<PhysicalMemory>> ops = new LinkedHashMap<>();
        ops.put("lpLong", m -> m.lpLong(BASE));
        ops.put("laLong", m -> m.laLong(BASE));
        ops.put("spLong", m -> m.spLong(BASE, 1L));
        ops.put("soLong", m -> m.soLong(BASE, 1L));
        ops.put("casLong", m -> m.casLong(BASE, 5L, 6L));
        ops.put("lpInt", m -> m.lpInt(BASE));
        ops.put("laInt", m -> m.laInt(BASE));
        ops.put("spInt", m -> m.spInt(BASE, 1));
        ops.put("soInt", m -> m.soInt(BASE, 1));
        ops.put("casInt", m -> m.casInt(BASE, 5, 6));
        ops.put("copyIn(byte[])", m -> m.copyIn(new byte[8], 0, BASE, 8));
        ops.put("copyIn(ByteBuffer)", m -> m.copyIn(ByteBuffer.allocate(8), BASE));
        ops.put("copyOut(byte[])", m -> m.copyOut(BASE, new byte[8], 0, 8));
        ops.put("copyOut(ByteBuffer)", m -> m.copyOut(BASE, ByteBuffer.allocateDirect(8)));
        ops.put("fill", m -> m.fill(BASE, 8, (byte) 1));
        ops.put("zero", m -> m.zero(BASE, 8));
        ops.put("zero-large", m -> m.zero(BASE, SIZE));
        return ops;
    }

    /** A body run by one thread of {@link #runConcurrently}, given its index. */
    @FunctionalInterface
    protected interface ThreadBody {
        void run(int thread) throws Exception;
    }

    /** Runs {@code body} on {@code threads} threads released together; rethrows the first failure. */
    protected static void runConcurrently(int threads, ThreadBody body) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            CountDownLatch ready = new CountDownLatch(threads);
            CountDownLatch go = new CountDownLatch(1);
            List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int index = t;
                futures.add(pool.submit(() -> {
                    ready.countDown();
                    go.await();
                    body.run(index);
                    return null;
                }));
            }
            ready.await();
            go.countDown();
            for (Future<?> f : futures) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    if (e.getCause() instanceof Error err) {
                        throw err;
                    }
                    throw (Exception) e.getCause();
                }
            }
        } finally {
            pool.shutdownNow();
            assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS), "worker threads did not stop");
        }
    }
}
