package dev.vcmm;

import dev.vcmm.pagetable.Access;
import dev.vcmm.pagetable.FaultReason;
import dev.vcmm.pagetable.PageTableFormat;
import dev.vcmm.pagetable.WalkResult;
import dev.vcmm.spi.PhysicalMemory;

import java.nio.ByteBuffer;

/**
 * A guest's memory as its intermediate physical addresses (IPA): every access is translated by the host VCM's
 * stage-2 table (a hardware walk, {@code PageTable.walk}) and then made to the physical memory the bus places
 * there. A guest's stage-1 tables are built and walked through it, so every stage-1 descriptor read is itself
 * translated through stage 2, as a nested SMMU or MMU walk does (Arm ARM D8 "Stage 2 translation of stage 1
 * table walks"), a guest cannot name host memory its host VCM did not map for it, and writing a descriptor (the
 * guest's mapper, or the walker's dirty update) marks the stage-2 entry of the table page dirty.
 *
 * <p>A stage-2 fault throws {@link Stage2Fault}; the nested walk ({@link VcmKind.Guest}) turns it into a fault that
 * names stage 2, the IPA and the stage-1 level whose table read needed it. Each thread counts the memory reads of
 * its current nested walk ({@link #begin()}), descriptor reads of both stages.
 *
 * <p><b>Thread-safety:</b> thread-safe; holds no state but the host and the per-thread walk counters.
 */
final class Stage2Memory implements PhysicalMemory {

    /** The counters of the nested walk the current thread is making. */
    static final class Walk {
        /** Memory reads of descriptors, both stages. */
        int reads;
        /** Stage-1 descriptor reads done (so the level of the next one). */
        int stage1Reads;
    }

    private static final ThreadLocal<Walk> WALK = ThreadLocal.withInitial(Walk::new);

    /** A stage-2 translation failed: thrown through the stage-1 walker or mapper. */
    static final class Stage2Fault extends IllegalStateException {
        private static final long serialVersionUID = 1L;
        final transient WalkResult.PageFault fault;
        final long ipa;

        Stage2Fault(long ipa, WalkResult.PageFault fault) {
            super(String.format("stage 2 fault at IPA 0x%x: %s", ipa, fault));
            this.ipa = ipa;
            this.fault = fault;
        }
    }

    private final Vcm host;
    private final PageTableFormat stage2;
    private final Bus bus;

    Stage2Memory(Vcm host, PageTableFormat stage2, Bus bus) {
        this.host = host;
        this.stage2 = stage2;
        this.bus = bus;
    }

    /** Starts counting a nested walk on this thread. @return its counters */
    static Walk begin() {
        Walk w = WALK.get();
        w.reads = 0;
        w.stage1Reads = 0;
        return w;
    }

    /** {@return the memory reads of the last nested walk this thread made, both stages} */
    static int lastWalkReads() {
        return WALK.get().reads;
    }

    /** Counts the reads of a stage-2 walk: one per level it read. */
    static void countStage2(WalkResult r) {
        Walk w = WALK.get();
        w.reads += (r instanceof WalkResult.Translation t ? t.level() : Math.max(0, ((WalkResult.PageFault) r).level())) + 1;
    }

    private long translate(long ipa, Access access) {
        WalkResult r = host.walkTable(stage2, ipa, access, true);
        countStage2(r);
        if (r instanceof WalkResult.PageFault f) {
            throw new Stage2Fault(ipa, f);
        }
        return ((WalkResult.Translation) r).pa();
    }

    private PhysicalMemory at(long ipa, long pa) {
        MemoryType t = bus.at(pa);
        if (t == null) {
            throw new Stage2Fault(ipa, new WalkResult.PageFault(ipa, 0, FaultReason.ADDRESS_SIZE,
                String.format("pa=0x%x is outside every memory type", pa)));
        }
        return t.memory();
    }

    private long readAddress(long ipa) {
        long pa = translate(ipa, Access.READ);
        Walk w = WALK.get();
        w.reads++;
        w.stage1Reads++;
        return pa;
    }

    @Override
    public long base() {
        return host.start();
    }

    @Override
    public long size() {
        return host.length();
    }

    @Override
    public long lpLong(long ipa) {
        long pa = readAddress(ipa);
        return at(ipa, pa).lpLong(pa);
    }

    @Override
    public long laLong(long ipa) {
        long pa = readAddress(ipa);
        return at(ipa, pa).laLong(pa);
    }

    @Override
    public void spLong(long ipa, long value) {
        long pa = translate(ipa, Access.WRITE);
        at(ipa, pa).spLong(pa, value);
    }

    @Override
    public void soLong(long ipa, long value) {
        long pa = translate(ipa, Access.WRITE);
        at(ipa, pa).soLong(pa, value);
    }

    @Override
    public boolean casLong(long ipa, long expected, long update) {
        long pa = translate(ipa, Access.WRITE);
        return at(ipa, pa).casLong(pa, expected, update);
    }

    @Override
    public int lpInt(long ipa) {
        long pa = readAddress(ipa);
        return at(ipa, pa).lpInt(pa);
    }

    @Override
    public int laInt(long ipa) {
        long pa = readAddress(ipa);
        return at(ipa, pa).laInt(pa);
    }

    @Override
    public void spInt(long ipa, int value) {
        long pa = translate(ipa, Access.WRITE);
        at(ipa, pa).spInt(pa, value);
    }

    @Override
    public void soInt(long ipa, int value) {
        long pa = translate(ipa, Access.WRITE);
        at(ipa, pa).soInt(pa, value);
    }

    @Override
    public boolean casInt(long ipa, int expected, int update) {
        long pa = translate(ipa, Access.WRITE);
        return at(ipa, pa).casInt(pa, expected, update);
    }

    /** The bytes of {@code [ipa, ipa + length)} page by page (a page of IPA is contiguous in physical memory). */
    private interface PagePiece {
        void piece(PhysicalMemory memory, long pa, int done, int n);
    }

    private void pages(long ipa, long length, Access access, PagePiece piece) {
        long done = 0;
        while (done < length) {
            long a = ipa + done;
            int n = (int) Math.min(length - done, Vcm.GRANULE - (a & (Vcm.GRANULE - 1)));
            long pa = translate(a, access);
            piece.piece(at(a, pa), pa, (int) done, n);
            done += n;
        }
    }

    @Override
    public void copyIn(byte[] src, int srcOffset, long ipa, int length) {
        pages(ipa, length, Access.WRITE, (m, pa, done, n) -> m.copyIn(src, srcOffset + done, pa, n));
    }

    @Override
    public void copyIn(ByteBuffer src, long ipa) {
        int length = src.remaining();
        pages(ipa, length, Access.WRITE, (m, pa, done, n) -> {
            ByteBuffer part = src.slice(src.position() + done, n);
            m.copyIn(part, pa);
        });
        src.position(src.position() + length);
    }

    @Override
    public void copyOut(long ipa, byte[] dst, int dstOffset, int length) {
        pages(ipa, length, Access.READ, (m, pa, done, n) -> m.copyOut(pa, dst, dstOffset + done, n));
    }

    @Override
    public void copyOut(long ipa, ByteBuffer dst) {
        int length = dst.remaining();
        pages(ipa, length, Access.READ, (m, pa, done, n) -> {
            ByteBuffer part = dst.slice(dst.position() + done, n);
            m.copyOut(pa, part);
        });
        dst.position(dst.position() + length);
    }

    @Override
    public void fill(long ipa, long length, byte value) {
        pages(ipa, length, Access.WRITE, (m, pa, done, n) -> m.fill(pa, n, value));
    }

    @Override
    public boolean isClosed() {
        return false;
    }

    /** The view owns nothing: the host's memory closes with its memory types. */
    @Override
    public void close() {
    }

    @Override
    public String toString() {
        return "Stage2Memory{IPA of " + host.name() + " through " + stage2.name() + '}';
    }
}
