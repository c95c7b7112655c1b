package dev.vcmm.pagetable;

class Arm64_16kTtbr1ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return PageTableFormats.byName("arm64-16k-ttbr1");
    }
}
