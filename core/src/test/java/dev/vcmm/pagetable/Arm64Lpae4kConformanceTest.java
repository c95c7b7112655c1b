package dev.vcmm.pagetable;

class Arm64Lpae4kConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return Arm64Lpae4kFormat.INSTANCE;
    }
}
