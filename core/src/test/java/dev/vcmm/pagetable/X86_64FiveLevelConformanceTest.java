package dev.vcmm.pagetable;

class X86_64FiveLevelConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return X86_64FiveLevelFormat.INSTANCE;
    }
}
