package dev.vcmm.pagetable;

/**
 * Changes the attributes of the leaves of a range in place (an {@code mprotect} of the table): every leaf entry in
 * the range is re-encoded with the same output address and leaf size and the new attributes, with one
 * compare-and-set per entry, so a concurrent walk reads each entry either before or after its change and a part of
 * the range is never unmapped in between (no break-before-make). Tables are not touched: nothing is allocated,
 * split, unlinked or retired.
 *
 * <p>Two passes: the first reads the range and checks that every leaf lies wholly inside it (a leaf that sticks out
 * would change attributes outside the range; the caller must split it first by unmapping), the second rewrites.
 * So a refused call changes nothing. Unmapped parts of the range are skipped.
 *
 * <p><b>Thread-safety:</b> stateless. The caller owns the range (no map or unmap of it may run meanwhile, as for
 * {@link PageTable#map}); walks may run at any time. Tables reachable from the range cannot be retired under the
 * rewrite, because only an unmap of a span wholly inside the range retires them.
 *
 * <p>Arm note: rewriting the entries of a contiguous run one at a time leaves the run mixed for a moment. Our
 * walker decodes each entry alone; on Arm hardware a TLB may then hold either attribute set until the invalidation
 * that the caller issues after this returns, which is the permitted outcome of a permission-only change.
 */
final class Protector {

    private Protector() {
    }

    /**
     * Re-encodes every leaf entry in {@code [va, va + length)} with {@code attributes}.
     *
     * @return the bytes whose leaves were rewritten
     * @throws IllegalArgumentException if a leaf sticks out of the range; nothing changed
     * @throws IllegalStateException    if an entry changed under the rewrite (a caller error: someone mapped or
     *                                  unmapped the range meanwhile); entries rewritten before stay rewritten
     */
    static long protect(PageTableFormat format, TableMemory entries, long root, long va, long length, Attributes attributes) {
        walk(format, entries, root, va, length, null);
        return walk(format, entries, root, va, length, attributes);
    }

    /** One pass: checks only ({@code attributes == null}), or rewrites. @return the bytes of leaves met */
    private static long walk(PageTableFormat format, TableMemory entries, long root, long va, long length, Attributes attributes) {
        final int entryBytes = format.entryBytes();
        long done = 0;
        long leaves = 0;
        while (done < length) {
            long a = va + done;
            long table = root;
            long step = 0;
            for (int level = 0; level < format.levels(); level++) {
                long index = (a >>> format.levelShift(level)) & ((1L << format.levelBits(level)) - 1);
                long address = table + index * entryBytes;
                long raw = entries.la(address);
                long span = format.entrySpan(level);
                if (raw == 0) {
                    step = span - (a & (span - 1)); // an empty entry: skip what it spans
                    break;
                }
                Descriptor d = format.decode(level, raw, a);
                if (d instanceof Descriptor.Table t) {
                    table = t.tablePa();
                    continue;
                }
                if (!(d instanceof Descriptor.Leaf leaf)) {
                    step = span - (a & (span - 1)); // an entry that faults maps nothing to change
                    break;
                }
                LeafSize size = leaf.leaf();
                long inLeaf = a & (size.size() - 1);
                long leafStart = done - inLeaf; // offset of the leaf's first byte from va
                if (leafStart < 0 || leafStart + size.size() > length) {
                    throw new IllegalArgumentException(String.format("%s: the %s leaf at va=0x%x sticks out of the range"
                        + " va=0x%x length=0x%x; its attributes cannot change without changing its neighbours'", format.name(),
                        LeafSize.humanSize(size.size()), a - inLeaf, va, length));
                }
                long entrySpan = size.entrySpan();
                if (attributes != null) {
                    int i = (int) (inLeaf / entrySpan);
                    long leafPa = leaf.pa() - inLeaf;
                    long now = format.leafEntry(size, leafPa, i, attributes);
                    if (now != raw && !entries.cas(address, raw, now)) {
                        throw new IllegalStateException(String.format("%s: the entry at 0x%x for va=0x%x changed under the"
                            + " attribute change; the range was mapped or unmapped meanwhile", format.name(), address, a));
                    }
                }
                step = entrySpan - (a & (entrySpan - 1));
                leaves += step;
                break;
            }
            if (step == 0) {
                throw new IllegalStateException(format.name() + ": a table descriptor at the last level for va=0x" + Long.toHexString(a));
            }
            done += step;
        }
        return leaves;
    }
}
