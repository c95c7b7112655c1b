package dev.vcmm.pagetable;

class RiscvSv48ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return RiscvSv48Format.INSTANCE;
    }
}
