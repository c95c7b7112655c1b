package dev.vcmm.jcstress;

import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.WalkResult;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.JJ_Result;

/**
 * Block split swap: a 2 MiB block is split by unmapping one 4 KiB page in its middle (a table of 64 KiB
 * contiguous runs is built, filled, and swapped in with one compare-and-set) while a walk reads an address
 * near the block's end, which stays mapped. The walk sees the old block or the new table, both translating
 * identically: never a fault, never another address.
 *
 * <p>Results: r1 = the walk's physical address minus the expected one (-1 for a fault); r2 = the size of
 * the leaf it used.
 */
@JCStressTest
@Outcome(id = "0, 2097152", expect = Expect.ACCEPTABLE, desc = "The walk read the old 2 MiB block (before the swap).")
@Outcome(id = "0, 65536", expect = Expect.ACCEPTABLE, desc = "The walk read the new table: a 64 KiB contiguous run with the same translation.")
@Outcome(expect = Expect.FORBIDDEN, desc = "The part that stays mapped disappeared or moved during the split: not hitless.")
@State
public class BlockSplitSwapTest {

    static final long VA = 0x4020_0000L;
    static final long PA = 0x8020_0000L;
    static final long PROBE = 0x1F_F042L;

    final Tables t = new Tables();
    final PageTable table = t.create();

    {
        table.map(VA, PA, 2 << 20, Attributes.RW);
    }

    @Actor
    public void split() {
        table.unmap(VA + (1 << 20), 4096);
    }

    @Actor
    public void walk(JJ_Result r) {
        WalkResult w = table.translate(VA + PROBE);
        if (w instanceof WalkResult.Translation tr) {
            r.r1 = tr.pa() - (PA + PROBE);
            r.r2 = tr.leafSize();
        } else {
            r.r1 = -1;
            r.r2 = 0;
        }
    }
}
