package dev.vcmm.pagetable;

class Arm64_64kConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return PageTableFormats.byName("arm64-64k");
    }
}
