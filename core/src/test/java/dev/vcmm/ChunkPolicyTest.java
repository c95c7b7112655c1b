package dev.vcmm;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ChunkPolicyTest {

    @Test
    void shouldDescribeTheBuiltInPolicies() {
        assertArrayEquals(new int[] {12, 8, 4, 0}, ChunkPolicy.VCMM.orders());
        assertArrayEquals(new int[] {18, 9, 0}, ChunkPolicy.HUGE.orders());
        assertArrayEquals(new int[] {0}, ChunkPolicy.PAGES_4K.orders());
        assertEquals("16M+1M+64K+4K", ChunkPolicy.VCMM.toString());
        assertEquals("1G+2M+4K", ChunkPolicy.HUGE.toString());
        assertEquals("4K", ChunkPolicy.PAGES_4K.toString());
        assertArrayEquals(new long[] {1L << 30, 2L << 20, 4096}, ChunkPolicy.HUGE.chunkSizes());
        assertEquals(4096, ChunkPolicy.VCMM.smallestChunkSize());
        assertEquals(12, ChunkPolicy.VCMM.largestOrder());
    }

    @Test
    void shouldBuildFromSizesAndCompareByValue() {
        ChunkPolicy p = ChunkPolicy.of(2L << 20, 64 * 1024);
        assertArrayEquals(new int[] {9, 4}, p.orders());
        assertEquals(65536, p.smallestChunkSize());
        assertEquals(ChunkPolicy.VCMM, ChunkPolicy.of(16L << 20, 1L << 20, 65536, 4096));
        assertEquals(ChunkPolicy.VCMM.hashCode(), ChunkPolicy.of(16L << 20, 1L << 20, 65536, 4096).hashCode());
        assertNotEquals(ChunkPolicy.VCMM, ChunkPolicy.HUGE);
    }

    @Test
    void shouldNotExposeItsArray() {
        ChunkPolicy.VCMM.orders()[0] = 0;
        assertEquals(12, ChunkPolicy.VCMM.order(0));
    }

    @Test
    void shouldRejectBadSizesNamingThem() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.of(8192, 6144))
            .getMessage().contains("chunkSizes[1]=6144"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.of(2048))
            .getMessage().contains("chunkSizes[0]=2048"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.of(4096, 65536))
            .getMessage().contains("chunkSizes[1]=65536"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.of(65536, 65536))
            .getMessage().contains("no duplicates"));
        assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.of(0));
        assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.of(-4096));
        assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.of(1L << 62));
        assertThrows(IllegalArgumentException.class, ChunkPolicy::of);
        assertThrows(NullPointerException.class, () -> ChunkPolicy.of((long[]) null));
    }

    @Test
    void shouldParseItsOwnToString() {
        for (ChunkPolicy p : new ChunkPolicy[] {ChunkPolicy.VCMM, ChunkPolicy.HUGE, ChunkPolicy.PAGES_4K}) {
            assertEquals(p, ChunkPolicy.parse(p.toString()));
        }
        assertEquals(ChunkPolicy.of(65536, 4096), ChunkPolicy.parse(" 64k + 4096 "));
        assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.parse("16M+x"));
        assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.parse(""));
        assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.parse("4K+16M"));
        assertThrows(IllegalArgumentException.class, () -> ChunkPolicy.parse("99999999999999999G"));
    }
}
