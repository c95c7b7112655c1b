/**
 * jcstress tests of vcmm's lock-free protocols, one class per protocol, each outcome described:
 * {@link dev.vcmm.jcstress.TableInstallTest} (two threads install a next-level table at one slot),
 * {@link dev.vcmm.jcstress.BlockSplitSwapTest} (a block replaced by a table while a walk reads it),
 * {@link dev.vcmm.jcstress.WalkRetireTest} and {@link dev.vcmm.jcstress.WalkCloseTest} (a walk never
 * observes a retired table reused, nor a closed table's memory given to another table), and
 * {@link dev.vcmm.jcstress.BuddyMergeWordTest} (two buddies freed at once merge exactly once),
 * {@link dev.vcmm.jcstress.BuddyDoubleFreeWordTest} (two frees of one block: exactly one succeeds).
 *
 * <p>Run with {@code ./vcmm jcstress} (all arguments go to jcstress, e.g. {@code -m quick -t Walk}).
 * The page-table tests use the Arm64 4 KiB-granule format: 4 levels, 2 MiB blocks that split into
 * 64 KiB contiguous runs.
 */
package dev.vcmm.jcstress;
