/**
 * The reservation space of a VCM: {@link dev.vcmm.space.AddressSpaceAllocator} hands out aligned ranges
 * of an address space {@code [start, start + length)} that may lie anywhere in the unsigned 64-bit range,
 * including its very top. Addresses are unsigned longs throughout: they are compared only with
 * {@link java.lang.Long#compareUnsigned}, and internally as offsets from the start of the space, which
 * are never negative.
 */
package dev.vcmm.space;
