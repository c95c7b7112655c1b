package dev.vcmm.property.graph;

import dev.vcmm.Client;
import dev.vcmm.property.graph.GraphModel.MAssoc;
import dev.vcmm.property.graph.GraphModel.MClient;
import dev.vcmm.property.graph.GraphModel.MPm;
import dev.vcmm.property.graph.GraphModel.MRes;
import dev.vcmm.property.graph.GraphModel.MVcm;
import org.quicktheories.core.Gen;

import java.util.ArrayList;
import java.util.List;

import static dev.vcmm.property.graph.Op.ints;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The operations on clients: open one, close one (a closed one again: a no-op). The creations of the other families
 * go through a client when their {@code owner} says so; closing it releases what it owned, as {@link Client}
 * documents, leaving orphaned the memory that backs others' reservations and the VCMs others still use.
 */
final class ClientOps {

    private ClientOps() {
    }

    record OpenClient() implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new OpenClient());

        @Override
        public void apply(GraphRun w) {
            GraphModel m = w.model;
            m.clients.add(new MClient(w.vcmm.client("client" + (m.clients.size() + m.closedClients.size()))));
        }
    }

    /** Closes a client (a closed one again: a no-op); the model releases what it owned. */
    record CloseClient(int client) implements Op {
        static final Gen<Op> GEN = ints(1).map(a -> new CloseClient(a[0]));

        @Override
        public void apply(GraphRun w) {
            MClient c = GraphModel.pick(w.model.clients, w.model.closedClients, client());
            if (c != null) {
                release(w, c);
            }
        }
    }

    /**
     * Closes a client: the model unbacks and unreserves its reservations, deactivates and removes its associations,
     * frees its VCMs that nothing else uses and its allocations that back nothing (the others become orphans, freed
     * by their last unback). A closed client: a no-op. Then checks that all it owned is gone but what others use.
     */
    static void release(GraphRun w, MClient c) {
        GraphModel m = w.model;
        if (c.closed) {
            w.expect().run(c.client::close);
            return;
        }
        List<MPm> freedByClose = new ArrayList<>(); // orphans of other clients whose last backing was c's
        List<MRes> shared = new ArrayList<>(); // held by another too: the close drops the client's reference only
        for (MRes r : c.res) {
            if (m.reservations.contains(r) && r.refs > 1) {
                r.refs--;
                shared.add(r);
            } else if (m.reservations.contains(r)) {
                if (r.pm != null) {
                    freedByClose.addAll(m.unbackInModel(r)); // checked once the real close has run
                }
                m.unreserveInModel(r);
                w.unmapped(r);
            }
        }
        for (MAssoc a : c.assocs) {
            if (m.assocs.contains(a)) {
                m.deactivateInModel(a);
                a.vcm.res.values().forEach(w::unmapped);
                m.removeAssocInModel(a);
            }
        }
        for (MVcm v : c.vcms) {
            if (m.vcms.contains(v)) {
                v.orphan = true; // freed now if empty, else once the others' last use goes
            }
        }
        m.sweepOrphanVcms();
        for (MPm p : c.pms) {
            if (m.pms.contains(p)) {
                if (p.backs.isEmpty()) {
                    m.physFreeInModel(p);
                } else {
                    p.orphan = true;
                }
            }
        }
        w.expect().run(c.client::close);
        c.closed = true;
        m.clients.remove(c);
        m.closedClients.add(c);
        assertTrue(c.client.isClosed(), w.where());
        for (MPm p : freedByClose) {
            assertTrue(p.pm.isFreed(), () -> "closing " + c + " unbacked the last backing of orphan " + p.pm + " but did not free it" + w.where());
        }
        // everything it owned is gone, but memory still backing others' reservations and VCMs others still use
        for (MRes r : c.res) {
            if (shared.contains(r)) {
                assertTrue(!r.r.isReleased(), () -> "closed " + c + " released " + r.r + ", which another holder has" + w.where());
            } else {
                assertTrue(r.r.isReleased() && !r.r.isBacked(), () -> "closed " + c + " left " + r.r + w.where());
            }
        }
        for (MAssoc a : c.assocs) {
            assertTrue(a.a.isRemoved() && !a.a.isActive(), () -> "closed " + c + " left " + a.a + w.where());
        }
        for (MVcm v : c.vcms) {
            assertEquals(!m.vcms.contains(v), v.vcm.isFreed(), () -> "closed " + c + ": " + v + " freed=" + v.vcm.isFreed() + w.where());
        }
        for (MPm p : c.pms) {
            assertEquals(p.backs.isEmpty(), p.pm.isFreed(), () -> "closed " + c + ": " + p.pm + " backs " + p.backs.size() + w.where());
        }
    }
}
