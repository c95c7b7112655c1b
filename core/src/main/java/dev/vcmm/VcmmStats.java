package dev.vcmm;

import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.spi.AllocatorStats;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A snapshot of a {@link Vcmm}'s statistics: per memory type (its allocator), per VCM (reservations,
 * backed bytes, page tables by format) and per device (IOTLB, faults, bytes moved). {@link #toString()}
 * prints it as aligned tables.
 *
 * <p><b>Thread-safety:</b> immutable. Taken while the graph changes, each figure is read once (not all at one
 * instant); taken at a quiescent point it is exact.
 *
 * @param memoryTypes one entry per memory type
 * @param vcms        one entry per VCM
 * @param devices     one entry per device
 */
public record VcmmStats(List<MemoryTypeStats> memoryTypes, List<VcmStats> vcms, List<DeviceStats> devices) {

    /** Copies the lists. */
    public VcmmStats {
        memoryTypes = List.copyOf(memoryTypes);
        vcms = List.copyOf(vcms);
        devices = List.copyOf(devices);
    }

    /**
     * One memory type.
     *
     * @param name       its name
     * @param secure     whether it is secure
     * @param pageTables whether page tables are allocated from it
     * @param allocator  its allocator's statistics
     */
    public record MemoryTypeStats(String name, boolean secure, boolean pageTables, AllocatorStats allocator) {
    }

    /**
     * One VCM.
     *
     * @param name               its name
     * @param kind               virtual or one-to-one
     * @param start              first address
     * @param length             bytes of address space
     * @param reservations       number of reservations
     * @param reservedBytes      bytes reserved
     * @param backedBytes        bytes of reservations that are backed
     * @param associations       number of associations
     * @param activeAssociations number of active associations
     * @param tableBytesByFormat page-table bytes by format name
     * @param pteWrites          page-table entry writes since the VCM was made, in 4 KiB pages: for each of the
     *                           VCM's page tables, the bytes that a successful back, sparse reserve, unback (whole
     *                           or part: the bytes that were mapped, in each table whose unmap returned), remap,
     *                           sparse unbind or setAttributes (the bytes of leaves rewritten) wrote, divided by 4096. When every leaf is a 4 KiB page (e.g. a
     *                           buffer of scattered 4 KiB chunks) that is exactly the leaf entries written; a larger
     *                           leaf counts as its pages (a 2 MiB block: 512, though it is one entry). Not counted:
     *                           the undo writes of a failed operation, the tables an association fills or a close
     *                           clears. Kept in per-thread cells (no atomic on back or unback): exact at a quiescent
     *                           point
     */
    public record VcmStats(String name, Vcm.Kind kind, long start, long length, int reservations, long reservedBytes,
                           long backedBytes, int associations, int activeAssociations, Map<String, Long> tableBytesByFormat,
                           long pteWrites) {
        /** Copies the map. */
        public VcmStats {
            tableBytesByFormat = Map.copyOf(tableBytesByFormat);
        }
    }

    /** @return a snapshot of {@code vcmm} */
    static VcmmStats of(Vcmm vcmm) {
        List<MemoryTypeStats> types = new ArrayList<>();
        for (MemoryType m : vcmm.memoryTypes()) {
            types.add(new MemoryTypeStats(m.name(), m.isSecure(), m == vcmm.pageTableMemory(), m.stats()));
        }
        List<VcmStats> vcms = new ArrayList<>();
        for (Vcm v : vcmm.vcms()) {
            long reserved = 0;
            long backed = 0;
            List<Reservation> rs = v.reservations();
            for (Reservation r : rs) {
                reserved += r.length();
                if (r.isBacked()) {
                    backed += r.length() - Bindings.unboundBytes(r); // pages a sub-range unback unbound are not backed
                }
            }
            Map<String, Long> tables = new LinkedHashMap<>();
            for (PageTableFormat f : v.formats()) {
                PageTableView t = v.table(f);
                if (t != null) {
                    tables.put(f.name(), t.tableBytes());
                }
            }
            List<Association> as = v.associations();
            vcms.add(new VcmStats(v.name(), v.kind(), v.start(), v.length(), rs.size(), reserved, backed, as.size(),
                (int) as.stream().filter(Association::isActive).count(), tables, v.pteWrites.sum()));
        }
        List<DeviceStats> devices = new ArrayList<>();
        for (Device d : vcmm.devices()) {
            devices.add(d.stats());
        }
        return new VcmmStats(types, vcms, devices);
    }

    /** @return the snapshot as aligned text tables */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("%-12s %10s %10s %10s %10s %6s%n", "memory type", "total", "allocated", "free", "cached", "frag"));
        for (MemoryTypeStats m : memoryTypes) {
            AllocatorStats a = m.allocator();
            sb.append(String.format("%-12s %10s %10s %10s %10s %6.3f%s%n", m.name(), size(a.totalBytes()), size(a.allocatedBytes()),
                size(a.freeBytes()), size(a.cachedBytes()), a.fragmentation(),
                (m.secure() ? "  secure" : "") + (m.pageTables() ? "  page tables" : "")));
        }
        sb.append(String.format("%n%-8s %-10s %18s %6s %10s %10s %7s  %s%n", "vcm", "kind", "start", "res", "reserved", "backed",
            "assoc", "page tables"));
        for (VcmStats v : vcms) {
            StringBuilder t = new StringBuilder();
            v.tableBytesByFormat().forEach((f, b) -> t.append(f).append('=').append(size(b)).append(' '));
            sb.append(String.format("%-8s %-10s %#18x %6d %10s %10s %3d/%-3d  %s%n", v.name(), v.kind(), v.start(), v.reservations(),
                size(v.reservedBytes()), size(v.backedBytes()), v.activeAssociations(), v.associations(), t.toString().strip()));
        }
        sb.append(String.format("%n%-12s %8s %8s %8s %7s %7s %10s %10s %s%n", "device", "hits", "misses", "flushes", "faults",
            "retries", "read", "written", "state"));
        for (DeviceStats d : devices) {
            IotlbStats i = d.iotlb();
            sb.append(String.format("%-12s %8s %8s %8s %7d %7d %10s %10s %s%n", d.device(),
                i == null ? "-" : Long.toString(i.hits()), i == null ? "-" : Long.toString(i.misses()),
                i == null ? "-" : Long.toString(i.flushes()), d.faults(), d.retries(), size(d.bytesRead()), size(d.bytesWritten()),
                d.crashed() ? "crashed" : "ok"));
        }
        return sb.toString();
    }

    private static String size(long bytes) {
        return Sizes.format(bytes);
    }
}
