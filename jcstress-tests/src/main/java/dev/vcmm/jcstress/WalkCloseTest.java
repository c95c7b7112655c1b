package dev.vcmm.jcstress;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.WalkResult;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Arbiter;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.III_Result;

/**
 * Walk vs close (a walk that read freed table memory, as a race): one thread closes table t1 and makes t2 from the
 * same page-table memory, mapping the same address elsewhere; another walks t1. The walk answers t1's
 * mapping (it ended before the close) or faults as closed; it never answers t2's mapping; once both are
 * done every page of t1 is back.
 *
 * <p>Results: r1 = 1 for t1's address, 0 for a fault, 2 for t2's address, 3 for anything else; r2 = 1 if
 * the fault's detail says the table is closed; r3 = pages t1 still holds after both actors.
 */
@JCStressTest
@Outcome(id = "1, 0, 0", expect = Expect.ACCEPTABLE, desc = "The walk ended before the close: t1's mapping.")
@Outcome(id = "0, 1, 0", expect = Expect.ACCEPTABLE, desc = "The walk began after or overlapped the close: a fault saying t1 is closed.")
@Outcome(id = "2, .*", expect = Expect.FORBIDDEN, desc = "t1's walk answered t2's mapping: it read a freed table that t2 reused.")
@Outcome(expect = Expect.FORBIDDEN, desc = "A fault that does not say closed, another address, or t1 still holding pages after its walks ended.")
@State
public class WalkCloseTest {

    static final long VA = 0x10_0000L;
    static final long PA1 = 0x8000_0000L;
    static final long PA2 = 0x9999_0000L;

    final Tables t = new Tables();
    final PageTable t1 = t.create();
    PageTable t2;

    {
        t1.map(VA, PA1, 4096, Attributes.RW);
    }

    @Actor
    public void closeAndReuse() {
        t1.close();
        t2 = t.create();
        t2.map(VA, PA2, 4096, Attributes.RW);
    }

    @Actor
    public void walk(III_Result r) {
        WalkResult w = t1.walk(VA, Access.READ, false);
        r.r1 = Tables.answer(w, PA1, PA2);
        r.r2 = w instanceof WalkResult.PageFault f && f.detail().contains("closed") ? 1 : 0;
    }

    @Arbiter
    public void check(III_Result r) {
        r.r3 = (int) (t1.heldBytes() >>> 12);
    }
}
