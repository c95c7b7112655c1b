package dev.vcmm.bench;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Group;
import org.openjdk.jmh.annotations.GroupThreads;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Control;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.TimeUnit;

/**
 * The machine's cost of moving one cache line between the two cores that run a JMH group: two threads take turns
 * on one counter (a ping-pong), so each operation is one line transfer and a wait for it. Not a benchmark of vcmm:
 * it gives the cross-thread figures of {@link SegmentAllocBenchmark#producer}/{@code consumer} a reference taken
 * in the same run, since on a 2-vCPU VM the transfer's cost depends on where the host places the two vCPUs and can
 * change between runs.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(1)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@State(Scope.Group)
public class CoreToCoreBenchmark {

    private static final VarHandle TURN;

    static {
        try {
            TURN = MethodHandles.lookup().findVarHandle(CoreToCoreBenchmark.class, "turn", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    long p00, p01, p02, p03, p04, p05, p06, p07;
    /** Even: the ping side's turn; odd: the pong side's. */
    volatile long turn;
    long q00, q01, q02, q03, q04, q05, q06, q07;

    /** Waits for an even turn, then passes it on: one line transfer per call each way. */
    @Benchmark
    @Group("pingPong")
    @GroupThreads(1)
    public void ping(Control control) {
        await(0, control);
    }

    /** Waits for an odd turn, then passes it on. */
    @Benchmark
    @Group("pingPong")
    @GroupThreads(1)
    public void pong(Control control) {
        await(1, control);
    }

    private void await(long parity, Control control) {
        long t;
        while (((t = (long) TURN.getAcquire(this)) & 1) != parity) {
            if (control.stopMeasurement) {
                return; // the other side stopped: its last turn will not come
            }
            Thread.onSpinWait();
        }
        TURN.setRelease(this, t + 1);
    }
}
