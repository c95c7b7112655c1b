package dev.vcmm.bench;

import io.netty.buffer.PooledByteBufAllocator;
import io.netty.util.Version;
import io.netty.util.internal.PlatformDependent;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Prints the facts a benchmark result needs next to it: JDK, CPUs, Netty's version and whether Netty
 * uses {@code sun.misc.Unsafe}. Run: {@code java -cp benchmarks/target/vcmm-benchmarks.jar dev.vcmm.bench.Env}.
 *
 * <p><b>Thread-safety:</b> a main class, single-threaded.
 */
public final class Env {

    private Env() {
    }

    public static void main(String[] args) throws Exception {
        System.out.println("java.vm = " + System.getProperty("java.vm.vendor") + " " + System.getProperty("java.vm.name")
            + " " + System.getProperty("java.runtime.version"));
        System.out.println("availableProcessors = " + Runtime.getRuntime().availableProcessors());
        Path cpuinfo = Path.of("/proc/cpuinfo");
        if (Files.isReadable(cpuinfo)) {
            try (var lines = Files.lines(cpuinfo)) {
                lines.filter(l -> l.startsWith("model name")).findFirst()
                    .ifPresent(l -> System.out.println("cpu = " + l.substring(l.indexOf(':') + 1).trim()));
            }
        }
        Version.identify().forEach((k, v) -> {
            if (k.equals("netty-buffer") || k.equals("netty-common")) {
                System.out.println(k + " = " + v.artifactVersion());
            }
        });
        System.out.println("netty PlatformDependent.hasUnsafe() = " + PlatformDependent.hasUnsafe());
        System.out.println("netty unsafe unavailability cause = " + PlatformDependent.getUnsafeUnavailabilityCause());
        System.out.println("netty directBufferPreferred = " + PlatformDependent.directBufferPreferred());
        System.out.println("netty PooledByteBufAllocator: useCacheForAllThreads=" + PooledByteBufAllocator.defaultUseCacheForAllThreads()
            + " numDirectArena=" + PooledByteBufAllocator.defaultNumDirectArena()
            + " pageSize=" + PooledByteBufAllocator.defaultPageSize()
            + " maxOrder=" + PooledByteBufAllocator.defaultMaxOrder()
            + " smallCacheSize=" + PooledByteBufAllocator.defaultSmallCacheSize()
            + " normalCacheSize=" + PooledByteBufAllocator.defaultNormalCacheSize());
    }
}
