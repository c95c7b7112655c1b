package dev.vcmm;

/**
 * Formatting of byte counts for messages and {@code toString}: {@code 4K}, {@code 16M}, {@code 1G}
 * when exact, the plain number of bytes otherwise.
 *
 * <p><b>Thread-safety:</b> stateless.
 */
final class Sizes {

    private Sizes() {
    }

    /** @return {@code bytes} as {@code nG}, {@code nM} or {@code nK} when it is an exact multiple, else {@code n}. */
    static String format(long bytes) {
        if (bytes != 0) {
            if ((bytes & ((1L << 30) - 1)) == 0) {
                return (bytes >> 30) + "G";
            }
            if ((bytes & ((1L << 20) - 1)) == 0) {
                return (bytes >> 20) + "M";
            }
            if ((bytes & ((1L << 10) - 1)) == 0) {
                return (bytes >> 10) + "K";
            }
        }
        return Long.toString(bytes);
    }

    /** @return {@code 0x} followed by {@code value} in lower-case hex. */
    static String hex(long value) {
        return "0x" + Long.toHexString(value);
    }
}
