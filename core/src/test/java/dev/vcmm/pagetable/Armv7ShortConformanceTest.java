package dev.vcmm.pagetable;

class Armv7ShortConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return Armv7ShortFormat.INSTANCE;
    }
}
