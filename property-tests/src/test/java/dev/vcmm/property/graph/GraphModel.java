package dev.vcmm.property.graph;

import dev.vcmm.Association;
import dev.vcmm.AssociationMode;
import dev.vcmm.Binding;
import dev.vcmm.Bound;
import dev.vcmm.Client;
import dev.vcmm.Device;
import dev.vcmm.PhysMem;
import dev.vcmm.Reservation;
import dev.vcmm.ReservationAttributes;
import dev.vcmm.Vcm;
import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.UnsupportedAttributeException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import static dev.vcmm.property.graph.GraphShape.PAGE;

/**
 * The reference model of the VCMM graph: a few plain maps and lists that say what the graph should be after each
 * step. VCM -> reservations (address, length, attributes, backing {@code (allocation, offset)}), VCM -> associations,
 * device -> association per slot (low, high), the live and the dead objects of each kind (the dead ones for use after
 * free), clients and what they own, crashed devices and their counters, and a byte model of physical memory.
 *
 * <p>It changes only through the {@code *InModel} transitions and the {@code add*} methods; it never calls the system
 * (the handles it keeps are for identity and for the checks to compare). Not thread-safe: one per run.
 */
final class GraphModel {

    final List<MVcm> vcms = new ArrayList<>();
    final List<Vcm> deadVcms = new ArrayList<>();
    final List<MRes> reservations = new ArrayList<>();
    final List<MRes> deadReservations = new ArrayList<>();
    final List<MPm> pms = new ArrayList<>();
    final List<MPm> deadPms = new ArrayList<>();
    final List<MAssoc> assocs = new ArrayList<>();
    final List<MAssoc> deadAssocs = new ArrayList<>();
    final List<MBound> bounds = new ArrayList<>();
    final List<MBound> deadBounds = new ArrayList<>();
    /** One-call bindings made (live while their reservation is; closed ones stay for use after destroy). */
    final List<MBinding> bindings = new ArrayList<>();
    /** Per device, the association programmed in its low (0) and high (1) slot. */
    final Map<Device, MAssoc[]> slots = new IdentityHashMap<>();
    /** Per device, the association programmed for each PASID from 1 up. */
    final Map<Device, Map<Integer, MAssoc>> pasids = new IdentityHashMap<>();
    final List<MClient> clients = new ArrayList<>();
    final List<MClient> closedClients = new ArrayList<>();
    final Set<Device> crashed = new HashSet<>();
    /** The associations a crash deactivated, to activate again after the reset. */
    final Map<Device, List<MAssoc>> activeAtCrash = new IdentityHashMap<>();
    final Map<Device, MCounters> counters = new IdentityHashMap<>();
    /** Bytes of physical memory by 4 KiB page (the key is its address); a page never written is zeros. */
    final Map<Long, byte[]> memory = new HashMap<>();
    final List<Long> writtenPages = new ArrayList<>();
    /** The chunks of every allocation that ever backed a reservation. */
    final Set<PhysMem.Chunk> everMapped = new HashSet<>();

    GraphModel(List<Device> devices) {
        for (Device d : devices) {
            slots.put(d, new MAssoc[2]);
            pasids.put(d, new TreeMap<>());
            counters.put(d, new MCounters());
        }
    }

    /** @return a live object by {@code i} modulo their count; with {@code i % 10 == 9} a dead one, if there is one */
    static <T> T pick(List<T> live, List<T> dead, int i) {
        if (i % 10 == 9 && !dead.isEmpty()) {
            return dead.get(i / 10 % dead.size());
        }
        return live.isEmpty() ? null : live.get(i % live.size());
    }

    // ---------------------------------------------------------------------------------------------
    // transitions

    void addVcm(MVcm v) {
        vcms.add(v);
    }

    void freeInModel(MVcm v) {
        vcms.remove(v);
        deadVcms.add(v.vcm);
    }

    void addAssoc(MAssoc a) {
        assocs.add(a);
        a.vcm.assocs.add(a);
    }

    void removeAssocInModel(MAssoc a) {
        assocs.remove(a);
        a.vcm.assocs.remove(a);
        deadAssocs.add(a);
    }

    void activateInModel(MAssoc a) {
        a.active = true;
        if (a.pasid != 0) {
            pasids.get(a.device).put(a.pasid, a);
        }
        for (int s : a.slots()) {
            slots.get(a.device)[s] = a;
        }
    }

    void deactivateInModel(MAssoc a) {
        pasids.get(a.device).remove(a.pasid, a);
        MAssoc[] s = slots.get(a.device);
        for (int i = 0; i < 2; i++) {
            if (s[i] == a) {
                s[i] = null;
            }
        }
        a.active = false;
    }

    void addReservation(MRes r) {
        reservations.add(r);
        r.vcm.res.put(r.address, r);
    }

    void unreserveInModel(MRes r) {
        if (r.bound != null) {
            r.bound.res.remove(r);
        }
        reservations.remove(r);
        r.vcm.res.remove(r.address);
        deadReservations.add(r);
    }

    void mappedInModel(MRes r, MPm m, long offset) {
        r.pm = m;
        r.offset = offset;
        m.backs.add(r);
        everMapped.addAll(m.pm.chunks());
    }

    /** @return the orphaned allocations whose last backing this was (the backing's, the bindings'), now freed in the model */
    List<MPm> unbackInModel(MRes r) {
        return unbackInModel(r, r.usedPms());
    }

    private List<MPm> unbackInModel(MRes r, Set<MPm> used) {
        r.pm = null;
        r.offset = -1;
        r.binds.clear();
        List<MPm> freed = new ArrayList<>();
        for (MPm m : used) {
            m.backs.remove(r);
            if (m.orphan && m.backs.isEmpty()) {
                pms.remove(m);
                deadPms.add(m);
                freed.add(m);
            }
        }
        return freed;
    }

    /** Unbinds pages {@code [off, off + len)} of backed {@code r}; all unbound: unbacked. @return orphans freed */
    List<MPm> subUnbackInModel(MRes r, long off, long len) {
        Set<MPm> before = r.usedPms();
        for (long o = off; o < off + len; o += PAGE) {
            r.binds.put(o, MRes.UNBOUND);
        }
        if (r.binds.size() == r.length / PAGE && r.binds.values().stream().allMatch(b -> b.pm() == null)) {
            return unbackInModel(r, before); // every page unbound: the reservation is unbacked
        }
        return releaseUnused(r, before);
    }

    /** Binds pages {@code [off, off + len)} of backed {@code r} to {@code m} from {@code moff}. @return orphans freed */
    List<MPm> remapInModel(MRes r, long off, long len, MPm m, long moff) {
        Set<MPm> before = r.usedPms();
        for (long o = 0; o < len; o += PAGE) {
            r.binds.put(off + o, new MRes.Bind(m, moff + o));
        }
        m.backs.add(r);
        everMapped.addAll(m.pm.chunks());
        return releaseUnused(r, before);
    }

    private List<MPm> releaseUnused(MRes r, Set<MPm> before) {
        Set<MPm> now = r.usedPms();
        List<MPm> freed = new ArrayList<>();
        for (MPm m : before) {
            if (!now.contains(m)) {
                m.backs.remove(r);
                if (m.orphan && m.backs.isEmpty()) {
                    pms.remove(m);
                    deadPms.add(m);
                    freed.add(m);
                }
            }
        }
        return freed;
    }

    void physFreeInModel(MPm m) {
        pms.remove(m);
        deadPms.add(m);
    }

    /** The VCMM frees an orphaned VCM (its client released) as soon as nothing uses it. */
    void sweepOrphanVcms() {
        for (MVcm v : List.copyOf(vcms)) {
            if (v.orphan && v.res.isEmpty() && v.assocs.isEmpty() && v.bounds.isEmpty()) {
                freeInModel(v);
            }
        }
    }

    /** @return the associations of {@code d} the crash deactivated (the caller notes their mappings as gone) */
    List<MAssoc> crashInModel(Device d) {
        List<MAssoc> wereActive = activeAtCrash.computeIfAbsent(d, k -> new ArrayList<>());
        List<MAssoc> now = new ArrayList<>();
        for (MAssoc a : assocs) {
            if (a.device == d && a.active) {
                wereActive.add(a);
                now.add(a);
                deactivateInModel(a);
            }
        }
        crashed.add(d);
        counters.get(d).crashes++;
        return now;
    }

    /** @return the associations the crash of {@code d} deactivated; the device is up again */
    List<MAssoc> resetInModel(Device d) {
        crashed.remove(d);
        List<MAssoc> wereActive = activeAtCrash.getOrDefault(d, List.of());
        activeAtCrash.remove(d);
        return wereActive;
    }

    /** @return the reservations of the VCMs active on {@code d}, each in the slot it goes through */
    List<MRes> reachable(Device d) {
        List<MRes> out = new ArrayList<>();
        MAssoc[] s = slots.get(d);
        for (int i = 0; i < 2; i++) {
            if (s[i] != null && (i == 0 || s[1] != s[0])) {
                for (MRes r : s[i].vcm.res.values()) {
                    if (slotFor(d, r.address) == i || s[1] == s[0]) {
                        out.add(r);
                    }
                }
            }
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // physical memory, byte by byte

    void modelWrite(long pa, byte[] src, int off, int n) {
        byte[] page = memory.computeIfAbsent(pa & -PAGE, k -> {
            writtenPages.add(k);
            return new byte[(int) PAGE];
        });
        System.arraycopy(src, off, page, (int) (pa & (PAGE - 1)), n); // n never crosses a page: pieces are per page
    }

    byte[] modelRead(long pa, int n) {
        byte[] page = memory.get(pa & -PAGE);
        int from = (int) (pa & (PAGE - 1));
        return page == null ? new byte[n] : Arrays.copyOfRange(page, from, from + n);
    }

    /** Zero on handoff: a new allocation's chunks read as zero, whatever a previous owner left in them. */
    void handedOffInModel(PhysMem pm) {
        for (PhysMem.Chunk c : pm.chunks()) {
            for (long page = c.pa(); page < c.end(); page += PAGE) {
                memory.remove(page);
            }
        }
    }

    /**
     * What the model says a DMA does: the pieces it moves, each {@code {position in the buffer, pa, bytes}} within
     * one 4 KiB page, up to the first page that faults (a leaf is whole pages of one reservation, so a leaf's pages
     * all fault or none does: the DMA stops at the same byte as one moving leaf by leaf).
     */
    record Prediction(int done, FaultReason reason, long faultAddress, List<long[]> pieces) { }

    Prediction predict(Device d, long address, int length, Access access) {
        return predict(d, 0, address, length, access);
    }

    Prediction predict(Device d, int pasid, long address, int length, Access access) {
        List<long[]> pieces = new ArrayList<>();
        int pos = 0;
        while (pos < length) {
            long va = address + pos;
            int n = (int) Math.min(length - pos, PAGE - (va & (PAGE - 1)));
            MAssoc as = pasid == 0 ? slotOf(d, va) : pasids.get(d).get(pasid);
            FaultReason why = null;
            long pa = -1;
            if (as == null) {
                why = FaultReason.TRANSLATION;
            } else if (d.format() != null && !d.format().isValidVa(va)) {
                why = FaultReason.ADDRESS_SIZE;
            } else {
                MRes r = as.vcm.at(va);
                if (r == null || r.pm == null || r.pa(va) < 0) {
                    why = FaultReason.TRANSLATION; // no reservation, not backed, or the page unbound
                } else if (!(access == Access.READ ? r.attributes.read() : r.attributes.write())) {
                    why = FaultReason.PERMISSION;
                } else {
                    pa = r.pa(va);
                    if (GraphShape.isSecurePa(pa) && !d.isSecure()) {
                        why = FaultReason.SECURE;
                    }
                }
            }
            if (why != null) {
                return new Prediction(pos, why, va, pieces);
            }
            pieces.add(new long[] {pos, pa, n});
            pos += n;
        }
        return new Prediction(length, null, 0, pieces);
    }

    // ---------------------------------------------------------------------------------------------
    // what the hardware can express

    /**
     * The model's split of each device whose split an op changed: {@code {lowLimit, highBase, hasHigh}}, compared
     * unsigned; a device not in it splits at the top bit. Keyed by identity (devices are made per run), weakly.
     */
    static final Map<Device, long[]> SPLITS = java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());

    /**
     * @return the slot (0 low, 1 high) a device uses for {@code a}, or -1 for neither: the top bit of the format's
     *         input address, or the split an op set (Armv7 TTBCR.N, Arm64 T0SZ/T1SZ, as the model computes them)
     */
    static int slotFor(Device d, long a) {
        PageTableFormat f = d.format();
        if (f == null) {
            return 0;
        }
        long[] split = SPLITS.get(d);
        if (split != null) {
            if (Long.compareUnsigned(a, split[0]) < 0) {
                return 0;
            }
            return split[2] != 0 && Long.compareUnsigned(a, split[1]) >= 0 ? 1 : -1;
        }
        boolean high = f.isValidVa(-1L) ? a < 0 : ((a >>> (f.vaBits() - 1)) & 1) != 0;
        return high ? 1 : 0;
    }

    /** @return the association programmed in the slot {@code d} uses for {@code a}, or null (none, or in neither half) */
    MAssoc slotOf(Device d, long a) {
        int slot = slotFor(d, a);
        return slot < 0 ? null : slots.get(d)[slot];
    }

    /** @return whether {@code v} lies where {@code d} (its format, and its split) can map it in {@code mode} */
    static boolean reachable(Device d, MVcm v, AssociationMode mode) {
        PageTableFormat f = d.format();
        if (f == null) {
            return true;
        }
        long first = v.vcm.start();
        long last = first + v.vcm.length() - 1;
        return f.isValidVa(first) && f.isValidVa(last) && (first < 0) == (last < 0)
            && (mode != AssociationMode.USE_LOW || slotFor(d, first) == 0 && slotFor(d, last) == 0)
            && (mode != AssociationMode.USE_HIGH || slotFor(d, first) == 1 && slotFor(d, last) == 1);
    }

    static boolean canExpress(PageTableFormat f, ReservationAttributes a) {
        try {
            f.checkAttributes(a.toPageAttributes());
            return true;
        } catch (UnsupportedAttributeException e) {
            return false;
        }
    }

    static boolean canMap(PageTableFormat f, MRes r) {
        return f.isValidVa(r.address) && f.isValidVa(r.address + r.length - 1);
    }

    /** @return the offset of {@code pa} in {@code pm}, or -1 */
    static long offsetOf(PhysMem pm, long pa) {
        long off = 0;
        for (PhysMem.Chunk c : pm.chunks()) {
            if (pa >= c.pa() && pa < c.end()) {
                return off + (pa - c.pa());
            }
            off += c.size();
        }
        return -1;
    }

    // ---------------------------------------------------------------------------------------------
    // the objects

    static final class MVcm {
        final Vcm vcm;
        final boolean oneToOne;
        final long start;
        final long length;
        final TreeMap<Long, MRes> res = new TreeMap<>(Long::compareUnsigned);
        final List<MAssoc> assocs = new ArrayList<>();
        final List<MBound> bounds = new ArrayList<>();
        /** Its owning client was released while others used it: freed once empty. */
        boolean orphan;

        MVcm(Vcm vcm, boolean oneToOne, long start, long length) {
            this.vcm = vcm;
            this.oneToOne = oneToOne;
            this.start = start;
            this.length = length;
        }

        Set<PageTableFormat> formats() {
            Set<PageTableFormat> out = new HashSet<>();
            for (MAssoc a : assocs) {
                if (a.device.format() != null) {
                    out.add(a.device.format());
                }
            }
            return out;
        }

        MRes at(long a) {
            Map.Entry<Long, MRes> e = res.floorEntry(a);
            return e != null && e.getValue().contains(a) ? e.getValue() : null;
        }

        boolean covers(long a, long len) {
            return Long.compareUnsigned(a, start) >= 0 && Long.compareUnsigned(a - start, length) < 0
                && Long.compareUnsigned(len, length - (a - start)) <= 0;
        }

        /** @return the ranges taken from the VCM's own free space: reservations outside bounds, and the bounds */
        List<long[]> taken() {
            List<long[]> out = new ArrayList<>();
            for (MRes r : res.values()) {
                if (r.bound == null) {
                    out.add(new long[] {r.address, r.length});
                }
            }
            for (MBound b : bounds) {
                out.add(new long[] {b.start, b.length});
            }
            out.sort((x, y) -> Long.compareUnsigned(x[0], y[0]));
            return out;
        }

        boolean overlaps(long a, long len) {
            for (long[] t : taken()) {
                if (Long.compareUnsigned(t[0], a + len - 1) <= 0 && Long.compareUnsigned(a, t[0] + t[1] - 1) <= 0) {
                    return true;
                }
            }
            return false;
        }

        /** @return whether a free range holds {@code len} bytes at a multiple of {@code align} */
        boolean fits(long len, long align) {
            return GraphModel.fits(start, length, taken(), len, align);
        }

        @Override
        public String toString() {
            return vcm.name();
        }
    }

    /** @return whether a gap of {@code [start, start + length)} between the sorted {@code taken} ranges holds {@code len} at {@code align} */
    static boolean fits(long start, long length, List<long[]> taken, long len, long align) {
        long cursor = start;
        List<long[]> gaps = new ArrayList<>();
        for (long[] t : taken) {
            gaps.add(new long[] {cursor, t[0] - cursor});
            cursor = t[0] + t[1];
        }
        gaps.add(new long[] {cursor, start + length - cursor});
        for (long[] g : gaps) {
            long pad = -g[0] & (align - 1);
            if (Long.compareUnsigned(g[1], pad) >= 0 && Long.compareUnsigned(g[1] - pad, len) >= 0) {
                return true;
            }
        }
        return false;
    }

    static final class MRes {
        final Reservation r;
        final MVcm vcm;
        final long address;
        final long length;
        /** Changed by setAttributes. */
        ReservationAttributes attributes;
        MPm pm;
        long offset = -1;
        /** Pages (by offset in the reservation) that sub-range unbacks and remaps changed: an allocation and offset, or unbound. */
        final Map<Long, Bind> binds = new TreeMap<>();

        /** A page's binding: {@code pm} from {@code off}, or unbound when {@code pm} is null. */
        record Bind(MPm pm, long off) { }

        static final Bind UNBOUND = new Bind(null, -1);

        /** The bound it was reserved from, or null. */
        MBound bound;
        /** Holders: 1, one more per ref. */
        int refs = 1;

        MRes(Reservation r, MVcm vcm, long address, long length, ReservationAttributes attributes) {
            this.r = r;
            this.vcm = vcm;
            this.address = address;
            this.length = length;
            this.attributes = attributes;
        }

        boolean contains(long a) {
            return Long.compareUnsigned(a, address) >= 0 && Long.compareUnsigned(a - address, length) < 0;
        }

        /** @return the physical address {@code a} reaches; -1 if its page is unbound */
        long pa(long a) {
            long o = a - address;
            Bind b = binds.get(o & -PAGE);
            if (b == null) {
                return pm.pm.physicalAddress(offset + o);
            }
            return b.pm() == null ? -1 : b.pm().pm.physicalAddress(b.off() + (o & (PAGE - 1)));
        }

        /** @return the allocations it holds a backing count of: its backing's and its bindings' */
        Set<MPm> usedPms() {
            Set<MPm> out = new LinkedHashSet<>();
            if (pm != null) {
                out.add(pm);
            }
            for (Bind b : binds.values()) {
                if (b.pm() != null) {
                    out.add(b.pm());
                }
            }
            return out;
        }

        /** @return the device addresses of this reservation that reach byte {@code off} of {@code m} */
        List<Long> addressesOf(MPm m, long off) {
            List<Long> out = new ArrayList<>();
            if (pm == m && off >= offset && off - offset < length && !binds.containsKey((off - offset) & -PAGE)) {
                out.add(address + (off - offset));
            }
            for (Map.Entry<Long, Bind> e : binds.entrySet()) {
                Bind b = e.getValue();
                if (b.pm() == m && off >= b.off() && off - b.off() < PAGE) {
                    out.add(address + e.getKey() + (off - b.off()));
                }
            }
            return out;
        }
    }

    /** A bound: a range of its VCM for its own reservations. */
    static final class MBound {
        final Bound b;
        final MVcm vcm;
        final long start;
        final long length;
        final List<MRes> res = new ArrayList<>();

        MBound(Bound b, MVcm vcm, long start, long length) {
            this.b = b;
            this.vcm = vcm;
            this.start = start;
            this.length = length;
        }

        boolean fits(long len, long align) {
            List<long[]> taken = new ArrayList<>();
            for (MRes r : res) {
                taken.add(new long[] {r.address, r.length});
            }
            taken.sort((x, y) -> Long.compareUnsigned(x[0], y[0]));
            return GraphModel.fits(start, length, taken, len, align);
        }
    }

    /** A one-call binding: its reservation, and the memory it allocated ({@code owns}) or was given. */
    record MBinding(Binding b, MRes r, MPm pm, boolean owns) {
    }

    static final class MPm {
        final PhysMem pm;
        final Set<MRes> backs = new LinkedHashSet<>();
        /** Its owning client was released while it still backed reservations: the last unback frees it. */
        boolean orphan;

        MPm(PhysMem pm) {
            this.pm = pm;
        }
    }

    static final class MAssoc {
        final Association a;
        final MVcm vcm;
        final Device device;
        /** Changed by setMode. */
        AssociationMode mode;
        final int pasid;
        boolean active;

        MAssoc(Association a, MVcm vcm, Device device, AssociationMode mode) {
            this(a, vcm, device, mode, 0);
        }

        MAssoc(Association a, MVcm vcm, Device device, AssociationMode mode, int pasid) {
            this.a = a;
            this.vcm = vcm;
            this.device = device;
            this.mode = mode;
            this.pasid = pasid;
        }

        int[] slots() {
            if (pasid != 0) {
                return new int[0];
            }
            return switch (mode) {
                case WHOLE -> new int[] {0, 1};
                case USE_LOW -> new int[] {0};
                case USE_HIGH -> new int[] {1};
            };
        }
    }

    /** A client and what it created: released (in the model as in {@link Client}) when closed. */
    static final class MClient {
        final Client client;
        final Set<MVcm> vcms = new LinkedHashSet<>();
        final Set<MRes> res = new LinkedHashSet<>();
        final Set<MPm> pms = new LinkedHashSet<>();
        final Set<MAssoc> assocs = new LinkedHashSet<>();
        boolean closed;

        MClient(Client client) {
            this.client = client;
        }

        @Override
        public String toString() {
            return client.name();
        }
    }

    /** The DMA counters of a device, as the model expects them. */
    static final class MCounters {
        long faults;
        long retries;
        long failed;
        long bytesRead;
        long bytesWritten;
        long crashes;
    }
}
