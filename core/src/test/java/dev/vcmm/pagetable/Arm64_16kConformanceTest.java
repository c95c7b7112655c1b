package dev.vcmm.pagetable;

class Arm64_16kConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return PageTableFormats.byName("arm64-16k");
    }
}
