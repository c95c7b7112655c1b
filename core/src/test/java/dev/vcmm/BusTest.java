package dev.vcmm;

import dev.vcmm.testing.SimpleTestBackend;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BusTest {

    @Test
    void shouldPlaceEveryAddressInItsMemoryTypeAndKnowWhichAreSecure() {
        try (MemoryType ddr = MemoryType.builder("ddr").base(0x8000_0000L).size(1 << 20).backend(new SimpleTestBackend()).build();
             MemoryType sec = MemoryType.builder("sec").base(0x4000_0000L).size(1 << 20).secure(true)
                 .backend(new SimpleTestBackend()).build();
             MemoryType other = MemoryType.builder("ddr").base(0x8000_0000L).size(1 << 20).backend(new SimpleTestBackend()).build()) {
            Bus bus = new Bus(List.of(ddr, sec));
            assertSame(ddr, bus.at(0x8000_0000L));
            assertSame(ddr, bus.at(0x8000_0000L + (1 << 20) - 1), "last byte");
            assertNull(bus.at(0x8000_0000L + (1 << 20)), "one past the end");
            assertNull(bus.at(0x7FFF_FFFFL), "one before the start");
            assertSame(sec, bus.at(0x4000_0123L));
            assertTrue(bus.isSecure(0x4000_0000L));
            assertFalse(bus.isSecure(0x8000_0000L));
            assertFalse(bus.isSecure(0), "nothing there: not secure");
            assertTrue(bus.holds(ddr));
            bus.checkHolds(sec);
            assertFalse(bus.holds(other), "same name and range, another object");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> bus.checkHolds(other));
            assertEquals("foreign handle: memoryType=ddr does not belong to this Vcmm", e.getMessage());
            assertThrows(NullPointerException.class, () -> bus.checkHolds(null));
        }
    }
}
