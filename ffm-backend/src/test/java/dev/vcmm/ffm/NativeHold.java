package dev.vcmm.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Holds a segment the way a running native call does, deterministically: a thread passes it to libc's
 * {@code qsort} (two 8-byte elements), whose comparator is an upcall that signals it is inside and then waits to
 * be let go. While it waits, the downcall keeps the segment's shared arena acquired, so closing that arena
 * fails ("Session is acquired by 1 clients"), exactly as it would under a long {@code read(2)} into the buffer.
 *
 * <p><b>Thread-safety:</b> one test thread creates and closes it; the holding thread is its own.
 */
final class NativeHold implements AutoCloseable {

    private static final Linker LINKER = Linker.nativeLinker();
    private static final MethodHandle QSORT = LINKER.downcallHandle(LINKER.defaultLookup().find("qsort").orElseThrow(),
        FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS));
    private static final MethodHandle COMPARE;

    static {
        try {
            COMPARE = MethodHandles.lookup().findVirtual(NativeHold.class, "compare",
                MethodType.methodType(int.class, MemorySegment.class, MemorySegment.class));
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final CountDownLatch inside = new CountDownLatch(1);
    private final CountDownLatch release = new CountDownLatch(1);
    private final Arena upcallArena = Arena.ofShared();
    private final Thread thread;
    private volatile Throwable failure;

    /** Starts holding the first 16 bytes of {@code segment} and returns once the native call is inside. */
    NativeHold(MemorySegment segment) throws InterruptedException {
        MemorySegment compare = LINKER.upcallStub(COMPARE.bindTo(this),
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS), upcallArena);
        MemorySegment base = segment.asSlice(0, 16);
        thread = Thread.ofPlatform().name("native-hold").start(() -> {
            try {
                QSORT.invokeExact(base, 2L, 8L, compare);
            } catch (Throwable t) {
                failure = t;
                inside.countDown();
            }
        });
        assertTrue(inside.await(10, TimeUnit.SECONDS), "qsort never called its comparator");
        if (failure != null) {
            throw new AssertionError("qsort failed", failure);
        }
    }

    @SuppressWarnings("unused") // the comparator upcall; must never throw (an upcall that throws ends the JVM)
    private int compare(MemorySegment a, MemorySegment b) {
        inside.countDown();
        try {
            release.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return 0;
    }

    /** Lets the native call return and waits for it. */
    @Override
    public void close() throws InterruptedException {
        release.countDown();
        thread.join(10_000);
        upcallArena.close();
        if (failure != null) {
            throw new AssertionError("qsort failed", failure);
        }
    }
}
