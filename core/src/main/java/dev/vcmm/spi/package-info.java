/**
 * Service-provider interfaces through which the core reaches memory: {@link dev.vcmm.spi.PhysicalMemory}
 * (words and bytes at physical addresses), {@link dev.vcmm.spi.BlockAllocator} (naturally aligned
 * blocks by order) and {@link dev.vcmm.spi.MemoryBackend} (the factory the core finds with
 * {@link java.util.ServiceLoader}).
 *
 * <h2>Access-mode prefixes</h2>
 * Accessors are named by their memory-ordering mode, as in JCTools and Agrona:
 * <table>
 *   <caption>prefixes</caption>
 *   <tr><th>prefix</th><th>mode</th><th>pairs with</th></tr>
 *   <tr><td>{@code lp}</td><td>plain load</td><td>nothing: single-thread or benign race</td></tr>
 *   <tr><td>{@code sp}</td><td>plain store</td><td>nothing: single-thread or benign race</td></tr>
 *   <tr><td>{@code la}</td><td>acquire load</td><td>a release store ({@code so}) or a {@code cas}</td></tr>
 *   <tr><td>{@code so}</td><td>release ("ordered") store</td><td>an acquire load ({@code la})</td></tr>
 *   <tr><td>{@code lv}</td><td>volatile load</td><td>volatile stores and {@code cas}</td></tr>
 *   <tr><td>{@code sv}</td><td>volatile store</td><td>volatile loads</td></tr>
 *   <tr><td>{@code cas}</td><td>compare-and-set, volatile semantics</td><td>everything</td></tr>
 * </table>
 * Every word is little-endian, whatever the host's byte order, so that an image of the memory is
 * what a little-endian hardware walker would read.
 */
package dev.vcmm.spi;
