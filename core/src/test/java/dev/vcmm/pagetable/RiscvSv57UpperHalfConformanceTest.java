package dev.vcmm.pagetable;

/** The conformance suite with its mappings in the upper (negative, sign-extended) half of the input space. */
class RiscvSv57UpperHalfConformanceTest extends PageTableConformanceTest {
    @Override
    protected PageTableFormat format() {
        return RiscvSv57Format.INSTANCE;
    }

    @Override
    long vaFor(LeafSize leaf) {
        return -(1L << (format().vaBits() - 1)) + super.vaFor(leaf);
    }
}
