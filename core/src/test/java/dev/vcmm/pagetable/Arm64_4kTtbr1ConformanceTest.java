package dev.vcmm.pagetable;

class Arm64_4kTtbr1ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return PageTableFormats.byName("arm64-4k-ttbr1");
    }
}
