/**
 * A plain-Java implementation of the memory SPI: {@link dev.vcmm.heap.HeapPhysicalMemory}, sparse
 * physical memory in 64 KiB heap pages. It needs no native access and no flags, so it serves tests,
 * tools that read a page-table image from a file, and baselines for the off-heap engine of
 * {@code dev.vcmm.ffm}.
 */
package dev.vcmm.heap;
