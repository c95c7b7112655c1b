package dev.vcmm.jcstress;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.PageTable;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Expect;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.I_Result;

/**
 * Walk vs table retire: one thread unmaps the whole 2 MiB span of page A (unlinking its last-level table
 * with one compare-and-set and retiring it), then maps page B of another span at the same index, which
 * needs a new last-level table; the allocator hands out the last freed page first, so a table freed
 * before the walks that could see it end would be B's table, with B's address where A's was. Meanwhile a
 * walk translates A. It answers A's old address (it read the table pointer before the unlink) or faults;
 * it never answers B's address through A.
 *
 * <p>Result: r1 = 1 for A's address, 0 for a fault, 2 for B's address, 3 for anything else.
 */
@JCStressTest
@Outcome(id = "1", expect = Expect.ACCEPTABLE, desc = "The walk read A's table before the unmap unlinked it: the old translation (an IOTLB flush follows an unmap).")
@Outcome(id = "0", expect = Expect.ACCEPTABLE, desc = "The walk came after the unlink: a translation fault.")
@Outcome(id = "2", expect = Expect.FORBIDDEN, desc = "The walk read a reused table: B's mapping answered through A's address.")
@Outcome(expect = Expect.FORBIDDEN, desc = "Some other address: table memory read while being rewritten.")
@State
public class WalkRetireTest {

    static final long A = 0x4020_0000L;
    static final long PA_A = 0x8000_0000L;
    static final long B = 0x4040_0000L; // the next 2 MiB span: the same index in its own last-level table
    static final long PA_B = 0x9999_0000L;

    final Tables t = new Tables();
    final PageTable table = t.create();

    {
        table.map(A, PA_A, 4096, Attributes.RW);
    }

    @Actor
    public void unmapAndMapElsewhere() {
        table.unmap(A, 2 << 20);
        table.map(B, PA_B, 4096, Attributes.RW);
    }

    @Actor
    public void walk(I_Result r) {
        r.r1 = Tables.answer(table.walk(A, Access.READ, false), PA_A, PA_B);
    }
}
