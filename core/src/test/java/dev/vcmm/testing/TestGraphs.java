package dev.vcmm.testing;

import dev.vcmm.DeviceKind;
import dev.vcmm.MemoryType;
import dev.vcmm.Vcmm;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.MemoryBackend;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * The VCMM graph the tests build again and again, in one place: memory types at the usual bases, the page-table
 * memory, and the devices, so that a test says only what is particular to it.
 *
 * <pre>{@code
 * vcmm = TestGraphs.graph().ddr(256 * MIB).pageTables(16 * MIB).secure(16 * MIB)
 *     .device("gpu", Arm64Lpae4kFormat.INSTANCE)
 *     .build();
 * Device gpu = vcmm.device("gpu");
 * }</pre>
 *
 * Memory types are added in the order of the calls (the first is the page-table memory unless
 * {@link Builder#pageTables} names one), and devices are created in order once the {@link Vcmm} is built; look them up
 * with {@link Vcmm#device(String)}. Lives in a package of its own (not {@code dev.vcmm}) so that the core's test-jar
 * can export it to the other modules without splitting a package.
 *
 * <p><b>Thread-safety:</b> a {@link Builder} is for one thread; the {@link Vcmm} it builds is the caller's to close.
 */
public final class TestGraphs {

    public static final long KIB = 1L << 10;
    public static final long MIB = 1L << 20;

    /** Where {@link Builder#ddr(long)} puts {@value #DDR} memory: 2 GiB. */
    public static final long DDR_BASE = 0x8000_0000L;
    /** Where {@link Builder#pageTables(long)} puts {@value #PT} memory: 256 MiB. */
    public static final long PT_BASE = 0x1000_0000L;
    /** Where {@link Builder#secure(long)} puts {@value #SECURE} memory: 512 MiB. */
    public static final long SECURE_BASE = 0x2000_0000L;

    /** The names of the memory types the builder's shortcuts add. */
    public static final String DDR = "ddr";
    public static final String PT = "pt";
    public static final String SECURE = "secure";

    private TestGraphs() {
    }

    /** @return an empty graph to add memory types and devices to */
    public static Builder graph() {
        return new Builder();
    }

    /** @return a VCMM with {@code ddrSize} bytes of {@code ddr} and 16 MiB of page-table memory {@code pt} after it */
    public static Vcmm ddrAndTables(long ddrSize) {
        return graph().ddr(ddrSize).pageTables(16 * MIB).build();
    }

    /** A graph to build: memory types in call order, then devices. */
    public static final class Builder {
        private final Vcmm.Builder vcmm = Vcmm.builder();
        private final List<Consumer<Vcmm>> devices = new ArrayList<>();
        private boolean built;

        private Builder() {
        }

        /** Adds {@code ddr} of {@code size} bytes at {@link #DDR_BASE}. */
        public Builder ddr(long size) {
            return ddr(DDR_BASE, size);
        }

        /** Adds {@code ddr} of {@code size} bytes at {@code base}. */
        public Builder ddr(long base, long size) {
            return memory(DDR, base, size);
        }

        /** Adds {@code pt} of {@code size} bytes at {@link #PT_BASE} and takes page tables from it. */
        public Builder pageTables(long size) {
            return pageTables(PT_BASE, size);
        }

        /** Adds {@code pt} of {@code size} bytes at {@code base} and takes page tables from it. */
        public Builder pageTables(long base, long size) {
            memory(PT, base, size);
            vcmm.pageTableMemory(PT);
            return this;
        }

        /** Adds secure memory {@code secure} of {@code size} bytes at {@link #SECURE_BASE}. */
        public Builder secure(long size) {
            return secure(SECURE_BASE, size);
        }

        /** Adds secure memory {@code secure} of {@code size} bytes at {@code base}. */
        public Builder secure(long base, long size) {
            return memory(MemoryType.builder(SECURE).base(base).size(size).secure(true));
        }

        /** Adds a plain memory type. */
        public Builder memory(String name, long base, long size) {
            return memory(MemoryType.builder(name).base(base).size(size));
        }

        /** Adds a memory type built by the caller (its own backend, maxOrder, security...). */
        public Builder memory(MemoryType.Builder type) {
            vcmm.memoryType(type);
            return this;
        }

        /** Uses {@code backend} for every memory type. */
        public Builder backend(MemoryBackend backend) {
            vcmm.backend(backend);
            return this;
        }

        /** Uses {@code mapper} for HOST VCMs. */
        public Builder hostMapper(HostMapper mapper) {
            vcmm.hostMapper(mapper);
            return this;
        }

        /** Adds a device behind a non-secure IOMMU walking {@code format}. */
        public Builder device(String name, PageTableFormat format) {
            return device(name, DeviceKind.IOMMU, format, false);
        }

        /** Adds a device. @see Vcmm#device(String, DeviceKind, PageTableFormat, boolean) */
        public Builder device(String name, DeviceKind kind, PageTableFormat format, boolean secure) {
            Objects.requireNonNull(name, "name");
            devices.add(v -> v.device(name, kind, format, secure));
            return this;
        }

        /** Adds a non-secure one-to-one device (no translation). */
        public Builder oneToOneDevice(String name) {
            return device(name, DeviceKind.ONE_TO_ONE, null, false);
        }

        /** Adds a CPU whose MMU walks {@code format}. */
        public Builder cpu(String name, PageTableFormat format) {
            return device(name, DeviceKind.CPU, format, false);
        }

        /**
         * Opens the memory types and creates the devices, in order.
         *
         * @throws IllegalStateException if built already
         * @throws IllegalArgumentException as {@link Vcmm.Builder#build()} and {@link Vcmm#device} do; nothing stays open
         */
        public Vcmm build() {
            if (built) {
                throw new IllegalStateException("this TestGraphs.Builder has built its Vcmm already");
            }
            built = true;
            Vcmm v = vcmm.build();
            try {
                devices.forEach(d -> d.accept(v));
            } catch (RuntimeException | Error e) {
                v.close();
                throw e;
            }
            return v;
        }
    }
}
