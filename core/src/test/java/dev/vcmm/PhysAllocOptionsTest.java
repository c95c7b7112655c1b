package dev.vcmm;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PhysAllocOptionsTest {

    @Test
    void shouldDefaultToScatteredPages() {
        assertFalse(PhysAllocOptions.DEFAULT.contiguous());
        assertEquals(4096, PhysAllocOptions.DEFAULT.alignment());
        assertTrue(PhysAllocOptions.CONTIGUOUS.contiguous());
        PhysAllocOptions o = PhysAllocOptions.DEFAULT.withAlignment(1L << 20).withContiguous(true);
        assertEquals(new PhysAllocOptions(true, 1L << 20), o);
        assertEquals("contiguous, alignment=1M", o.toString());
    }

    @Test
    void shouldRejectBadAlignmentNamingIt() {
        for (long bad : new long[] {0, -4096, 2048, 12288, 1L << 62}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PhysAllocOptions(false, bad));
            assertTrue(e.getMessage().contains("alignment=" + bad), e.getMessage());
        }
    }
}
