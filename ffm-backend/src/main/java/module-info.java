/**
 * vcmm's off-heap backend: simulated physical memory in a sparse memfd-backed {@code MemorySegment}, the
 * lock-free buddy allocator with off-heap metadata, real host mappings of that memory with
 * {@code mmap(MAP_FIXED|MAP_SHARED)}, and a pool of segments.
 *
 * <p>It calls {@code memfd_create}, {@code mmap} and friends through {@link java.lang.foreign.Linker}
 * downcalls and widens segments with {@code MemorySegment.reinterpret}: restricted methods, so run with
 * {@code --enable-native-access=dev.vcmm.ffm} (on the module path) or
 * {@code --enable-native-access=ALL-UNNAMED} (on the class path). Live pool counters (opt-in) need Agrona
 * on the module path and {@code --add-exports java.base/jdk.internal.misc=org.agrona}. It provides the core's two services;
 * the same providers are listed in {@code META-INF/services} for class-path use.
 *
 * @provides dev.vcmm.spi.MemoryBackend the {@code ffm} backend, at priority 100
 * @provides dev.vcmm.spi.HostMapper host mappings with {@code mmap} of the memory's file descriptor
 */
module dev.vcmm.ffm {
    requires transitive dev.vcmm.core;
    requires jdk.jfr;                 // the pool's JFR events (slow paths only)
    requires static org.agrona;       // live counters, opt-in: only a pool built with counters loads Agrona

    exports dev.vcmm.ffm;

    provides dev.vcmm.spi.HostMapper with dev.vcmm.ffm.MmapHostMapper;
    provides dev.vcmm.spi.MemoryBackend with dev.vcmm.ffm.FfmMemoryBackend;
}
