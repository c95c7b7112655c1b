package dev.vcmm;

import dev.vcmm.pagetable.LeafSize;
import dev.vcmm.pagetable.PageTableFormat;

import java.util.IdentityHashMap;
import java.util.Map;

/**
 * The mapping graph as Graphviz DOT: memory types, physical allocations, VCMs (with their page tables),
 * reservations and devices, and the edges between them (backs, reserves, associated/active, allocated
 * from; a guest VCM's stage 1 to its host's stage 2 under nested translation). Render with {@code dot -Tsvg graph.dot -o graph.svg}.
 *
 * <p><b>Thread-safety:</b> stateless. An export taken while the graph changes is a best-effort snapshot
 * (each object read once); taken at a quiescent point it is exact.
 */
public final class GraphExport {

    private GraphExport() {
    }

    /**
     * {@return the graph of {@code vcmm} in the DOT language}
     *
     * @param vcmm the VCMM
     */
    public static String toDot(Vcmm vcmm) {
        StringBuilder sb = new StringBuilder();
        sb.append("digraph vcmm {\n");
        sb.append("  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
        for (MemoryType m : vcmm.memoryTypes()) {
            sb.append(String.format("  %s [shape=cylinder, style=filled, fillcolor=\"%s\", label=\"%s\\n0x%x +%s%s\"];%n",
                id("mt", m.name()), m.isSecure() ? "#f4cccc" : "#d9ead3", esc(m.name()), m.base(),
                LeafSize.humanSize(m.size()), m == vcmm.pageTableMemory() ? "\\npage tables" : ""));
        }
        Map<PhysMem, String> memIds = new IdentityHashMap<>();
        for (Vcm vcm : vcmm.vcms()) {
            StringBuilder tables = new StringBuilder();
            for (PageTableFormat f : vcm.formats()) {
                PageTableView t = vcm.table(f);
                if (t != null) {
                    tables.append(String.format("\\n%s root 0x%x (%d tables)", f.name(), t.root(), t.tableCount()));
                }
            }
            sb.append(String.format("  %s [shape=box, style=\"rounded,filled\", fillcolor=\"#cfe2f3\", label=\"%s %s\\n0x%x +%s%s\"];%n",
                id("vcm", vcm.name()), esc(vcm.name()), vcm.kind(), vcm.start(), LeafSize.humanSize(vcm.length()), tables));
            Vcm host = vcm.host();
            if (host != null) { // nested translation: the guest's stage 1 (its tables above) over the host's stage 2
                sb.append(String.format("  %s -> %s [style=bold, color=\"#674ea7\", label=\"stage 1 output (IPA):\\nstage 2 of %s\"];%n",
                    id("vcm", vcm.name()), id("vcm", host.name()), esc(host.name())));
            }
            for (Reservation r : vcm.reservations()) {
                String rid = id("res", vcm.name() + "_" + Long.toHexString(r.address()));
                sb.append(String.format("  %s [shape=note, label=\"0x%x +%s\\n%s\"];%n", rid, r.address(),
                    LeafSize.humanSize(r.length()), esc(r.attributes().toString())));
                sb.append(String.format("  %s -> %s [label=\"reserves\"];%n", id("vcm", vcm.name()), rid));
                PhysMem pm = r.backingMemory();
                if (pm != null) {
                    String pid = memIds.computeIfAbsent(pm, p -> {
                        String newId = "pm" + memIds.size();
                        sb.append(String.format("  %s [shape=component, label=\"%s\\n%s in %d chunks\"];%n", newId,
                            esc(p.memoryType().name()), LeafSize.humanSize(p.length()), p.chunkCount()));
                        sb.append(String.format("  %s -> %s [style=dotted, label=\"from\"];%n", newId, id("mt", p.memoryType().name())));
                        return newId;
                    });
                    sb.append(String.format("  %s -> %s [label=\"backed by +0x%x\"];%n", rid, pid, r.backingOffset()));
                }
            }
        }
        for (Device d : vcmm.devices()) {
            sb.append(String.format("  %s [shape=hexagon, style=filled, fillcolor=\"%s\", label=\"%s\\n%s%s\"];%n",
                id("dev", d.name()), d.isSecure() ? "#f4cccc" : "#fff2cc", esc(d.name()), d.kind(),
                d.format() != null ? "\\n" + d.format().name() : ""));
            for (Association a : d.associations()) {
                sb.append(String.format("  %s -> %s [label=\"%s%s\"%s];%n", id("dev", d.name()), id("vcm", a.vcm().name()),
                    a.pasid() != 0 ? "pasid " + a.pasid() : a.mode(), a.isActive() ? ", active" : "", a.isActive() ? ", penwidth=2" : ", style=dashed"));
            }
        }
        sb.append("}\n");
        return sb.toString();
    }

    private static String id(String prefix, String name) {
        return "\"" + prefix + ":" + esc(name) + "\"";
    }

    private static String esc(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"");
    }
}
