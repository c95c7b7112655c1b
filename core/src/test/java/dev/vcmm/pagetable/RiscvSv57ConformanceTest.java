package dev.vcmm.pagetable;

class RiscvSv57ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return RiscvSv57Format.INSTANCE;
    }
}
