package dev.vcmm.pagetable;

class Arm64_4kVa39ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return PageTableFormats.byName("arm64-4k-va39");
    }
}
