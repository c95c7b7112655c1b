package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.PageTable;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;

import java.util.Objects;

/**
 * A read-only view of one of a {@link Vcm}'s page tables ({@link Vcm#table(PageTableFormat)}): its format and root,
 * hardware walks, and the bytes of table memory it uses. It offers no map, unmap or close, and no access to the
 * memory the tables live in: only the VCM changes its tables, so they always hold exactly its backed reservations.
 * The view stays valid while the VCM keeps the table; once the table is dropped (its last device of that format
 * deassociated) or its VCMM closed, walks fault as on a closed {@link PageTable}.
 *
 * <p><b>Thread-safety:</b> thread-safe, as the table's own walks and counters: {@link #walk} and
 * {@link #translate} may run in any number of threads, concurrently with backing and unbacking (a walk sees each
 * entry before or after a change); the counters are each read atomically, not together.
 */
public final class PageTableView {

    private final PageTable table;

    PageTableView(PageTable table) {
        this.table = Objects.requireNonNull(table, "table");
    }

    /** {@return the format} */
    public PageTableFormat format() {
        return table.format();
    }

    /** {@return the physical address of the root table: what a TTBR, CR3 or satp would hold} */
    public long root() {
        return table.root();
    }

    /**
     * A hardware walk of {@code va}, as a device would make it, with the table's own grace period: a table page
     * unlinked meanwhile is not reused while the walk may read it. Like a device's walk, a {@link Access#WRITE}
     * through a writable-clean leaf makes it dirty (the hardware's dirty-state update, the one change a walk makes;
     * it matters only while the VCM's {@link Vcm#dirtyTracking() dirty tracking} has cleaned entries).
     *
     * @param va       the input address
     * @param access   the access to check, or {@code null} for none
     * @param fromUser whether the access is unprivileged
     * @return the translation, or the fault
     * @see PageTable#walk(long, Access, boolean)
     */
    public WalkResult walk(long va, Access access, boolean fromUser) {
        return table.walk(va, access, fromUser);
    }

    /**
     * {@return the hardware walk of {@code va} with no permission check}
     *
     * @param va the input address
     */
    public WalkResult translate(long va) {
        return table.translate(va);
    }

    /** {@return the number of tables linked in, the root included} */
    public long tableCount() {
        return table.tableCount();
    }

    /**
     * {@return the bytes of table memory in use by linked tables.}
     *
     * @see PageTable#tableBytes()
     */
    public long tableBytes() {
        return table.tableBytes();
    }

    /**
     * {@return the bytes of table memory held from the allocator.}
     *
     * @see PageTable#heldBytes()
     */
    public long heldBytes() {
        return table.heldBytes();
    }

    /**
     * {@return the bytes of retired tables waiting for their grace period.}
     *
     * @see PageTable#retiredBytes()
     */
    public long retiredBytes() {
        return table.retiredBytes();
    }

    /** {@return whether the table was closed (dropped by its VCM, or the VCMM closed)} */
    public boolean isClosed() {
        return table.isClosed();
    }

    @Override
    public String toString() {
        return "PageTableView{" + table + '}';
    }
}
