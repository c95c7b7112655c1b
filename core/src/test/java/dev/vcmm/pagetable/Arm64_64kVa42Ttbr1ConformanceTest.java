package dev.vcmm.pagetable;

class Arm64_64kVa42Ttbr1ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return PageTableFormats.byName("arm64-64k-va42-ttbr1");
    }
}
