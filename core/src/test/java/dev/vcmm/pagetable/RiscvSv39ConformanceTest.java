package dev.vcmm.pagetable;

class RiscvSv39ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return RiscvSv39Format.INSTANCE;
    }
}
