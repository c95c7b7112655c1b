package dev.vcmm.ffm;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * A rough, JMH-free probe of what zeroing memory on handoff costs (docs/architecture.md, "Zero on handoff"): for each
 * size, the time to make a block read as zero by a plain fill, by punching it out of the memfd
 * ({@code fallocate(PUNCH_HOLE | KEEP_SIZE)}), and by {@link SegmentPhysicalMemory#zero} (holes skipped, data
 * filled); alone, and followed by the new owner writing one word per 4 KiB page; over blocks a previous owner left
 * resident and dirty, and over blocks never touched (holes). Not a test (surefire runs only {@code *Test}); run it
 * after {@code mvn -pl ffm-backend -am test-compile}:
 * <pre>
 * java --enable-native-access=ALL-UNNAMED \
 *   -cp core/target/classes:ffm-backend/target/classes:ffm-backend/target/test-classes dev.vcmm.ffm.ZeroCostProbe
 * </pre>
 *
 * <p><b>Thread-safety:</b> a program; one thread.
 */
public final class ZeroCostProbe {

    private static final MethodHandle FALLOCATE = Linker.nativeLinker().downcallHandle(
        Linker.nativeLinker().defaultLookup().find("fallocate").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));

    private ZeroCostProbe() {
    }

    private static void punch(int fd, long offset, long length) throws Throwable {
        if ((int) FALLOCATE.invokeExact(fd, 0x02 | 0x01, offset, length) != 0) { // PUNCH_HOLE | KEEP_SIZE
            throw new IllegalStateException("fallocate failed");
        }
    }

    public static void main(String[] args) throws Throwable {
        long base = 0x8000_0000L;
        long mib = 1L << 20;
        String[] modes = {"fill", "punch", "zero()"};
        try (SegmentPhysicalMemory m = SegmentPhysicalMemory.open("zero-cost", base, 512 * mib)) {
            int fd = m.fd().orElseThrow();
            for (boolean hole : new boolean[] {false, true}) {
                System.out.println(hole ? "blocks never touched (holes):" : "blocks left resident and dirty by a previous owner:");
                for (long len : new long[] {4096, 64 << 10, 256 << 10, 2 * mib, 64 * mib}) {
                    int reps = (int) Math.max(10, Math.min(2000, (128 * mib) / len));
                    double[][] us = new double[2][modes.length];
                    for (int round = 0; round < 3; round++) { // the last round is reported: the first ones warm up
                        for (int touch = 0; touch < 2; touch++) {
                            for (int mode = 0; mode < modes.length; mode++) {
                                long total = 0;
                                for (int i = 0; i < reps; i++) {
                                    long pa = base + (i % 4) * 64 * mib;
                                    if (hole) {
                                        punch(fd, pa - base, len);
                                    } else {
                                        m.fill(pa, len, (byte) 1);
                                    }
                                    long t0 = System.nanoTime();
                                    switch (mode) {
                                        case 0 -> m.fill(pa, len, (byte) 0);
                                        case 1 -> punch(fd, pa - base, len);
                                        default -> m.zero(pa, len);
                                    }
                                    if (touch == 1) {
                                        for (long o = 0; o < len; o += 4096) {
                                            m.spLong(pa + o, o);
                                        }
                                    }
                                    total += System.nanoTime() - t0;
                                }
                                us[touch][mode] = total / (double) reps / 1000.0;
                            }
                        }
                    }
                    System.out.printf("  %6d KiB: fill %9.1f us  punch %9.1f us  zero() %9.1f us"
                            + " | then every page written: fill %9.1f  punch %9.1f  zero() %9.1f us%n",
                        len >> 10, us[0][0], us[0][1], us[0][2], us[1][0], us[1][1], us[1][2]);
                }
            }
        }
    }
}
