package dev.vcmm.jcstress;

import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.WalkResult;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Arbiter;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.IIII_Result;

/**
 * Table install: two threads map two pages of one empty 2 MiB span at once, so both need the same three
 * tables below the root (levels 1, 2 and 3) and race to install each at one slot with a compare-and-set.
 * Exactly one install wins per slot; the loser frees its zeroed table (it was never published) and
 * continues in the winner's.
 *
 * <p>Results: r1 = 1 if both pages translate to their own addresses; r2 = tables in the table (root
 * included); r3 = pages held from the allocator beyond what the table accounts for (leaks); r4 = install
 * races lost (allocations beyond the four tables needed).
 */
@JCStressTest
@Outcome(id = "1, 4, 0, 0", expect = Expect.ACCEPTABLE, desc = "No race: one thread installed all three tables before the other looked; the other used them.")
@Outcome(id = {"1, 4, 0, 1", "1, 4, 0, 2", "1, 4, 0, 3"}, expect = Expect.ACCEPTABLE_INTERESTING,
    desc = "The threads raced for 1..3 install slots: each loser freed its unpublished table and used the winner's; no leak, no duplicate.")
@Outcome(expect = Expect.FORBIDDEN, desc = "A lost mapping, a duplicate table or a leaked page: the install protocol is broken.")
@State
public class TableInstallTest {

    static final long VA1 = 0x4020_0000L;
    static final long VA2 = 0x4020_1000L;

    final Tables t = new Tables();
    final PageTable table = t.create();

    @Actor
    public void mapFirst() {
        table.map(VA1, 0x8000_0000L, 4096, Attributes.RW);
    }

    @Actor
    public void mapSecond() {
        table.map(VA2, 0x8000_1000L, 4096, Attributes.RW);
    }

    @Arbiter
    public void check(IIII_Result r) {
        boolean both = table.translate(VA1) instanceof WalkResult.Translation a && a.pa() == 0x8000_0000L
            && table.translate(VA2) instanceof WalkResult.Translation b && b.pa() == 0x8000_1000L;
        r.r1 = both ? 1 : 0;
        r.r2 = (int) table.tableCount();
        r.r3 = t.allocator.usedPages() - (int) (table.heldBytes() >>> 12);
        r.r4 = t.allocator.allocations() - 4;
    }
}
