package dev.vcmm.pagetable;

/** The conformance suite with its mappings in the upper (negative, sign-extended) half of the input space. */
class X86_64FiveLevelUpperHalfConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return X86_64FiveLevelFormat.INSTANCE;
    }

    @Override
    long vaFor(LeafSize leaf) {
        return -(1L << (format().vaBits() - 1)) + super.vaFor(leaf);
    }
}
