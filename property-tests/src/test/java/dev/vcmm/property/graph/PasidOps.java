package dev.vcmm.property.graph;

import dev.vcmm.Association;
import dev.vcmm.AssociationMode;
import dev.vcmm.Device;
import dev.vcmm.DeviceKind;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.property.graph.GraphModel.MAssoc;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;
import org.quicktheories.core.Gen;

import java.util.ArrayList;
import java.util.List;

import static dev.vcmm.property.graph.GraphModel.canExpress;
import static dev.vcmm.property.graph.GraphModel.canMap;
import static dev.vcmm.property.graph.GraphModel.pick;
import static dev.vcmm.property.graph.Op.ints;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * The PASID operations: associate a VCM with a device under a PASID (1-3, and now and then 0 or past the largest, which
 * are refused), and DMA through a PASID. Activation, deactivation and deassociation are the {@link VcmOps}' own: they
 * pick PASID associations like the others.
 */
final class PasidOps {

    private PasidOps() {
    }

    record AssocPasid(int vcm, int device, int pasid) implements Op {
        static final Gen<Op> GEN = ints(3).map(a -> new AssocPasid(a[0], a[1],
            a[2] % 20 == 0 ? 0 : a[2] % 20 == 1 ? Association.MAX_PASID + 1 : 1 + a[2] % 3));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            Device d = w.device(device());
            MVcm v = pick(m.vcms, List.of(), vcm());
            if (v == null) {
                return;
            }
            PageTableFormat f = d.format();
            boolean badTable = false;
            if (f != null && !v.formats().contains(f)) {
                for (MRes r : v.res.values()) {
                    badTable |= !canExpress(f, r.attributes) || (r.pm != null && !canMap(f, r));
                }
            }
            long first = v.vcm.start();
            long last = first + v.vcm.length() - 1;
            boolean unreachable = f != null && (!f.isValidVa(first) || !f.isValidVa(last) || (first < 0) != (last < 0));
            boolean oneToOne = d.kind() == DeviceKind.ONE_TO_ONE;
            Association a = w.expect()
                .refuse(pasid() < 1 || pasid() > Association.MAX_PASID, IllegalArgumentException.class)
                .refuse(oneToOne || v.oneToOne, IllegalArgumentException.class)
                .refuse(unreachable || badTable, IllegalArgumentException.class)
                .refuse(v.assocs.stream().anyMatch(x -> x.device == d), IllegalArgumentException.class)
                .call(() -> w.vcmm.assoc(v.vcm, d, pasid()));
            if (a != null) {
                assertFalse(a.isActive(), w.where());
                assertEquals(pasid(), a.pasid(), w.where());
                m.addAssoc(new MAssoc(a, v, d, AssociationMode.WHOLE, pasid()));
            }
        }
    }

    /** A DMA through one of the PASIDs programmed in a device (or an unprogrammed one), disarmed: a fault terminates. */
    record DmaPasid(int pick, int target, long offset, int length, boolean write) implements Op {
        static final Gen<Op> GEN = ints(5).map(a -> new DmaPasid(a[0], a[1], a[2] * 997L, 1 + a[3] % (3 * 4096), a[4] % 2 == 0));

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            List<MAssoc> programmed = new ArrayList<>();
            for (Device d : w.devices) {
                programmed.addAll(m.pasids.get(d).values());
            }
            Device d;
            int pasid;
            long address;
            if (programmed.isEmpty() || pick() % 8 == 7) {
                d = w.device(pick());
                pasid = 1 + pick() % 3;
                address = GraphShape.REGIONS[target() % GraphShape.REGIONS.length][0] + offset() % 4096;
            } else {
                MAssoc a = programmed.get(pick() % programmed.size());
                d = a.device;
                pasid = a.pasid;
                List<MRes> res = new ArrayList<>(a.vcm.res.values());
                if (res.isEmpty()) {
                    address = a.vcm.start + offset() % a.vcm.length;
                } else {
                    MRes r = res.get(target() % res.size());
                    address = r.address + DeviceOps.Dma.within(offset(), r.length);
                }
            }
            w.note(String.format(" -> %s pasid %d at 0x%x", d.name(), pasid, address));
            w.dma.dma(d, pasid, address, length(), write(), false);
        }
    }
}
