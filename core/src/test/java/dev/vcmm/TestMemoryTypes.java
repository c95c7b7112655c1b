package dev.vcmm;

import dev.vcmm.testing.SimpleTestBackend;

import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Helpers shared by the core tests. */
final class TestMemoryTypes {

    static final long BASE = 0x8000_0000L;
    static final long KIB = 1L << 10;
    static final long MIB = 1L << 20;
    static final long GIB = 1L << 30;

    private TestMemoryTypes() {
    }

    /** A {@code ddr} memory type at {@link #BASE} over the simple test backend. */
    static MemoryType ddr(long size) {
        return MemoryType.builder("ddr").base(BASE).size(size).backend(new SimpleTestBackend()).build();
    }

    /** @return the chunk orders in buffer order. */
    static List<Integer> orders(PhysMem pm) {
        return pm.chunks().stream().map(PhysMem.Chunk::order).toList();
    }

    /** @return chunk count by order, largest order first. */
    static Map<Integer, Long> countByOrder(PhysMem pm) {
        Map<Integer, Long> m = new TreeMap<>((a, b) -> b - a);
        for (PhysMem.Chunk c : pm.chunks()) {
            m.merge(c.order(), 1L, Long::sum);
        }
        return m;
    }
}
