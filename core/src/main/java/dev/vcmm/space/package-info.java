/**
 * The reservation space of a VCM: {@link dev.vcmm.space.AddressSpaceAllocator} hands out aligned ranges
 * of an address space {@code [start, start + length)} that may lie anywhere in the unsigned 64-bit range,
 * including its very top. Addresses are unsigned longs throughout; the package never compares two
 * addresses with {@code <}.
 */
package dev.vcmm.space;
