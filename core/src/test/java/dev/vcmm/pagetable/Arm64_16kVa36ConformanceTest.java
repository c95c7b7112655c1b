package dev.vcmm.pagetable;

class Arm64_16kVa36ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return PageTableFormats.byName("arm64-16k-va36");
    }
}
