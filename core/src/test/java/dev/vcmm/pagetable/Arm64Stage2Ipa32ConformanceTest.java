package dev.vcmm.pagetable;

/** Stage 2 mappings apply at every exception level: the suite maps them with user access. */
class Arm64Stage2Ipa32ConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return Arm64Stage2Format.withIpaBits(32);
    }

    @Override
    Attributes rw() {
        return Attributes.RW.withUser(true);
    }
}
