package dev.vcmm.property.graph;

import dev.vcmm.Device;
import dev.vcmm.Mapping;
import dev.vcmm.MemoryType;
import dev.vcmm.Vcm;
import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.property.graph.GraphModel.MAssoc;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;

import static dev.vcmm.property.graph.GraphModel.offsetOf;
import static dev.vcmm.property.graph.GraphShape.DATA_TYPES;
import static dev.vcmm.property.graph.GraphShape.DDR_BASE;
import static dev.vcmm.property.graph.GraphShape.DDR_SIZE;
import static dev.vcmm.property.graph.GraphShape.PAGE;
import static dev.vcmm.property.graph.GraphShape.REGIONS;
import static dev.vcmm.property.graph.GraphShape.SECURE_BASE;
import static dev.vcmm.property.graph.GraphShape.SECURE_SIZE;
import static dev.vcmm.property.graph.GraphShape.SRAM_BASE;
import static dev.vcmm.property.graph.GraphShape.SRAM_SIZE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The invariants compared with the model after every step: the handles (VCMs, reservations, backings, formats,
 * associations and their state, device slots), translations through every device at sampled addresses and between
 * VCMs, the reverse maps ({@code reservationsOf}, {@code backingCount}, {@code whoMaps}), the memory accounting (data
 * memory and page tables), and the devices ({@link DmaChecks#checkDevices()}). Each failure names the steps before it.
 */
final class GraphChecks {

    private final GraphRun w;
    private final GraphModel model;

    GraphChecks(GraphRun w) {
        this.w = w;
        this.model = w.model;
    }

    void afterStep() {
        for (MPm m : model.pms) {
            assertEquals(m.backs.size(), m.pm.backingCount(), () -> m.pm + " backs " + w.vcmm.reservationsOf(m.pm) + w.where());
        }
        checkHandles();
        checkTranslations();
        checkReverseMaps();
        checkAccounting();
        w.dma.checkDevices();
    }

    void checkHandles() {
        List<Vcm> live = model.vcms.stream().map(v -> v.vcm).toList();
        assertEquals(Set.copyOf(live), Set.copyOf(w.vcmm.vcms()), () -> "live VCMs" + w.where());
        for (MVcm v : model.vcms) {
            assertEquals(v.res.values().stream().map(r -> r.r).toList(), v.vcm.reservations(), () -> "reservations of " + v + w.where());
            assertEquals(v.formats(), Set.copyOf(v.vcm.formats()), () -> "page-table formats of " + v + w.where());
            assertEquals(Set.copyOf(v.assocs.stream().map(a -> a.a).toList()), Set.copyOf(v.vcm.associations()),
                () -> "associations of " + v + w.where());
            for (MRes r : v.res.values()) {
                assertSame(r.pm == null ? null : r.pm.pm, r.r.backingMemory(), () -> "backing of " + r.r + w.where());
                assertEquals(r.offset, r.r.backingOffset(), () -> "backing offset of " + r.r + w.where());
                assertFalse(r.r.isReleased(), w.where());
                assertEquals(r.attributes, r.r.attributes(), () -> "attributes of " + r.r + w.where());
                assertEquals(r.refs, r.r.references(), () -> "references to " + r.r + w.where());
                assertSame(r.bound == null ? null : r.bound.b, r.r.bound(), () -> "bound of " + r.r + w.where());
            }
            assertEquals(v.bounds.stream().map(b -> b.b).toList(), v.vcm.bounds(), () -> "bounds of " + v + w.where());
            for (GraphModel.MBound b : v.bounds) {
                assertEquals(b.res.stream().map(r -> r.r).sorted((x, y) -> Long.compareUnsigned(x.address(), y.address())).toList(),
                    b.b.reservations(), () -> "reservations of " + b.b + w.where());
            }
        }
        for (MPm m : model.pms) {
            assertFalse(m.pm.isFreed(), () -> m.pm + w.where());
        }
        for (MPm m : model.deadPms) {
            assertTrue(m.pm.isFreed(), () -> m.pm + " should be freed" + w.where());
        }
        for (MAssoc a : model.deadAssocs) {
            assertTrue(a.a.isRemoved(), () -> a.a + w.where());
        }
        for (MRes r : model.deadReservations) {
            assertTrue(r.r.isReleased() && !r.r.isBacked(), w.where());
        }
        for (MAssoc a : model.assocs) {
            assertEquals(a.active, a.a.isActive(), () -> "state of " + a.a + w.where());
        }
        for (Device d : w.devices) {
            MAssoc[] s = model.slots.get(d);
            assertSame(s[0] == null ? null : s[0].a, d.activeLow(), () -> "low slot of " + d + w.where());
            for (int pasid = 1; pasid <= 3; pasid++) {
                MAssoc p = model.pasids.get(d).get(pasid);
                int q = pasid;
                assertSame(p == null ? null : p.a, d.activeFor(pasid), () -> "pasid " + q + " of " + d + w.where());
            }
            assertSame(s[1] == null ? null : s[1].a, d.activeHigh(), () -> "high slot of " + d + w.where());
        }
    }

    /**
     * Every device translates the edges of each reservation, just outside them, random addresses inside backed and
     * unbacked reservations and VCMs, and random addresses, as the model says; and VCM-to-VCM translation agrees.
     */
    void checkTranslations() {
        List<Long> samples = new ArrayList<>();
        for (long[] region : REGIONS) {
            samples.add(region[0] + (w.rnd.nextLong(region[1]) & -8));
        }
        samples.add(w.rnd.nextLong());
        samples.add(DDR_BASE + w.rnd.nextLong(DDR_SIZE));
        for (MVcm v : model.vcms) {
            samples.add(v.start);
            samples.add(v.start + v.length - 1);
            samples.add(v.start + (w.rnd.nextLong(v.length) & -8));
        }
        for (MRes r : model.reservations) {
            samples.add(r.address);
            samples.add(r.address + r.length - 1);
            samples.add(r.address - 1);
            samples.add(r.address + r.length);
            for (int i = r.pm == null ? 1 : 4; i > 0; i--) {
                samples.add(r.address + w.rnd.nextLong(r.length));
            }
        }
        for (Device d : w.devices) {
            for (long a : samples) {
                checkTranslation(d, a);
            }
            for (int pasid : model.pasids.get(d).keySet()) { // every PASID programmed, at the same samples
                for (long a : samples) {
                    checkTranslation(d, pasid, a);
                }
            }
        }
        if (model.vcms.size() >= 2) {
            for (int i = 0; i < 4; i++) {
                MVcm src = model.vcms.get(w.rnd.nextInt(model.vcms.size()));
                MVcm dst = model.vcms.get(w.rnd.nextInt(model.vcms.size()));
                long a = src.res.isEmpty() ? src.start : pickRes(src).address + w.rnd.nextLong(pickRes(src).length);
                MRes r = src.at(a);
                OptionalLong got = w.vcmm.translate(src.vcm, a, dst.vcm);
                Set<Long> candidates = new HashSet<>();
                if (r != null && r.pm != null && r.pa(a) >= 0) {
                    long pa = r.pa(a);
                    for (MPm m : model.pms) {
                        long off = offsetOf(m.pm, pa);
                        for (MRes o : off < 0 ? List.<MRes>of() : dst.res.values()) {
                            if (o.pm != null) {
                                candidates.addAll(o.addressesOf(m, off)); // through its backing or a binding
                            }
                        }
                    }
                    assertTrue(candidates.stream().allMatch(c -> dst.at(c).pa(c) == pa), w.where());
                }
                if (candidates.isEmpty()) {
                    assertTrue(got.isEmpty(), () -> String.format("translate(%s, 0x%x, %s) = %s, expected none%s", src, a, dst, got, w.where()));
                } else {
                    assertTrue(got.isPresent() && candidates.contains(got.getAsLong()),
                        () -> String.format("translate(%s, 0x%x, %s) = %s, expected one of %s%s", src, a, dst, got, candidates, w.where()));
                }
            }
        }
    }

    private MRes pickRes(MVcm v) {
        List<MRes> all = new ArrayList<>(v.res.values());
        return all.get(w.rnd.nextInt(all.size()));
    }

    /**
     * {@code pa == pm.physicalAddress(offset + delta)}, a SECURE fault for a non-secure device on secure memory, or a
     * fault; a write is refused where the reservation is read-only.
     */
    void checkTranslation(Device d, long a) {
        checkTranslation(d, 0, a);
    }

    /** As {@link #checkTranslation(Device, long)}, through the association programmed for {@code pasid}. */
    void checkTranslation(Device d, int pasid, long a) {
        MAssoc as = pasid == 0 ? model.slotOf(d, a) : model.pasids.get(d).get(pasid);
        MRes r = as == null || (d.format() != null && !d.format().isValidVa(a)) ? null : as.vcm.at(a);
        WalkResult got = d.translate(pasid, a, null, false);
        boolean unbound = r != null && r.pm != null && r.pa(a) < 0;
        w.count(r == null || r.pm == null ? "translate: fault" : unbound ? "translate: unbound page" : "translate: mapped"
            + (pasid != 0 ? " (pasid)" : ""));
        if (r == null || r.pm == null || unbound) {
            assertInstanceOf(WalkResult.PageFault.class, got,
                () -> String.format("%s translates 0x%x to %s; the model has no mapping (%s)%s", d, a, got, r == null ? "no reservation" : r.r, w.where()));
            return;
        }
        long pa = r.pa(a);
        if (GraphShape.isSecurePa(pa) && !d.isSecure()) {
            WalkResult.PageFault f = assertInstanceOf(WalkResult.PageFault.class, got,
                () -> String.format("non-secure %s reaches secure pa via 0x%x: %s%s", d, a, got, w.where()));
            assertEquals(FaultReason.SECURE, f.reason(), w.where());
            return;
        }
        WalkResult.Translation t = assertInstanceOf(WalkResult.Translation.class, got,
            () -> String.format("%s: 0x%x should reach pa=0x%x via %s, got %s%s", d, a, pa, r.r, got, w.where()));
        assertEquals(pa, t.pa(), () -> String.format("%s: 0x%x via %s%s", d, a, r.r, w.where()));
        if (!r.attributes.write()) {
            assertFalse(d.translate(pasid, a, Access.WRITE, false).isMapped(), () -> String.format("%s writes read-only 0x%x%s", d, a, w.where()));
        } else if (r.attributes.read()) {
            assertTrue(d.translate(pasid, a, Access.WRITE, false).isMapped(), () -> String.format("%s cannot write 0x%x%s", d, a, w.where()));
        }
    }

    /** {@code reservationsOf}, {@code backingCount} and {@code whoMaps} at sampled physical addresses agree with the model. */
    void checkReverseMaps() {
        List<Long> pas = new ArrayList<>();
        pas.add(DDR_BASE + w.rnd.nextLong(DDR_SIZE));
        pas.add(SECURE_BASE + w.rnd.nextLong(SECURE_SIZE));
        pas.add(SRAM_BASE + w.rnd.nextLong(SRAM_SIZE));
        for (MPm m : model.pms) {
            assertEquals(Set.copyOf(m.backs.stream().map(r -> r.r).toList()), Set.copyOf(w.vcmm.reservationsOf(m.pm)),
                () -> "reservationsOf " + m.pm + w.where());
            assertEquals(m.backs.size(), m.pm.backingCount(), () -> "backingCount of " + m.pm + w.where());
            pas.add(m.pm.physicalAddress(0));
            pas.add(m.pm.physicalAddress(m.pm.length() - 1));
            pas.add(m.pm.physicalAddress(w.rnd.nextLong(m.pm.length())));
        }
        for (MPm m : model.deadPms) {
            assertEquals(List.of(), w.vcmm.reservationsOf(m.pm), w.where());
            pas.add(m.pm.physicalAddress(w.rnd.nextLong(m.pm.length())));
        }
        for (MRes r : model.reservations) {
            long pa = r.pm == null ? -1 : r.pa(r.address + w.rnd.nextLong(r.length));
            if (pa >= 0) {
                pas.add(pa);
            }
        }
        for (long pa : pas) {
            Set<Mapping> expected = new HashSet<>();
            for (MPm m : model.pms) {
                long off = offsetOf(m.pm, pa);
                if (off < 0) {
                    continue;
                }
                for (MRes r : m.backs) {
                    for (long a : r.addressesOf(m, off)) { // its backing where no binding covers it, and its bindings
                        expected.add(new Mapping(r.r, a));
                    }
                }
            }
            List<Mapping> got = w.vcmm.whoMaps(pa);
            assertEquals(expected, Set.copyOf(got), () -> String.format("whoMaps(0x%x)%s", pa, w.where()));
            assertEquals(expected.size(), got.size(), () -> String.format("whoMaps(0x%x) has duplicates: %s%s", pa, got, w.where()));
        }
    }

    /**
     * Each data memory type's allocated bytes equal the sum of its live allocations' lengths, and the page-table
     * memory's equal the bytes the tables hold (none iff no VCM has a table).
     */
    void checkAccounting() {
        Map<MemoryType, Long> inUse = new HashMap<>();
        for (MPm m : model.pms) {
            inUse.merge(m.pm.memoryType(), m.pm.length(), Long::sum);
        }
        for (String name : DATA_TYPES) {
            MemoryType m = w.vcmm.memoryType(name);
            long expected = inUse.getOrDefault(m, 0L);
            assertEquals(expected, m.stats().allocatedBytes(), () -> name + " allocated bytes == live PhysMem lengths: " + m.stats() + w.where());
        }
        boolean tables = model.vcms.stream().anyMatch(v -> !v.formats().isEmpty());
        long pt = w.vcmm.pageTableMemory().stats().allocatedBytes();
        assertEquals(tables, pt > 0, () -> "page-table memory allocated=" + pt + " while tables exist=" + tables + w.where());
        long heldBytes = 0;
        for (MVcm v : model.vcms) {
            for (PageTableFormat f : v.formats()) {
                heldBytes += v.vcm.table(f).heldBytes();
            }
        }
        long held = heldBytes;
        assertEquals(held, pt, () -> "page-table memory held by the tables == allocated" + w.where());
    }

    Map<MemoryType, Long> allocatedBytes() {
        Map<MemoryType, Long> out = new HashMap<>();
        for (MemoryType m : w.vcmm.memoryTypes()) {
            out.put(m, m.stats().allocatedBytes());
        }
        return out;
    }

    /** Compares {@code n} bytes of physical memory at {@code pa} (within a page) with the model. */
    void checkPhysical(long pa, int n) {
        byte[] got = new byte[n];
        w.vcmm.memoryTypeAt(pa).memory().copyOut(pa, got, 0, n);
        byte[] expected = model.modelRead(pa, n);
        int at = Arrays.mismatch(expected, got);
        assertEquals(-1, at, () -> String.format("physical byte 0x%x is 0x%02x, the model says 0x%02x%s", pa + at, got[at], expected[at], w.where()));
    }

    /**
     * No DMA wrote where it should not have: every byte of every chunk that ever backed a reservation (all a device
     * could ever reach) equals the model, and with {@code everything} every byte of every data memory type.
     */
    void checkMemory(boolean everything) {
        byte[] block = new byte[1 << 20];
        byte[] zero = new byte[(int) PAGE];
        List<long[]> ranges = new ArrayList<>();
        if (everything) {
            for (String name : DATA_TYPES) {
                MemoryType m = w.vcmm.memoryType(name);
                ranges.add(new long[] {m.base(), m.size()});
            }
        } else {
            model.everMapped.forEach(c -> ranges.add(new long[] {c.pa(), c.size()}));
        }
        for (long[] range : ranges) {
            for (long base = range[0]; base < range[0] + range[1]; base += block.length) {
                int n = (int) Math.min(block.length, range[0] + range[1] - base);
                w.vcmm.memoryTypeAt(base).memory().copyOut(base, block, 0, n);
                for (int off = 0; off < n; off += (int) PAGE) {
                    byte[] expected = model.memory.getOrDefault(base + off, zero);
                    int at = Arrays.mismatch(expected, 0, (int) PAGE, block, off, off + (int) PAGE);
                    long pa = base + off + at;
                    int o = off;
                    assertEquals(-1, at, () -> String.format("byte at pa=0x%x is 0x%02x, the model says 0x%02x%s", pa,
                        block[o + at], expected[at], w.where()));
                }
            }
        }
        w.count(everything ? "memory: checked all" : "memory: checked the chunks ever mapped");
    }
}
