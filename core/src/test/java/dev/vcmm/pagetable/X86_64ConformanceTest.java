package dev.vcmm.pagetable;

class X86_64ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return X86_64Format.INSTANCE;
    }
}
