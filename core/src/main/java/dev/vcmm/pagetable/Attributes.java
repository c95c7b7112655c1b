package dev.vcmm.pagetable;

import java.util.Objects;

/**
 * Permissions and memory type of a mapping: what a leaf descriptor encodes.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param read    data reads allowed
 * @param write   data writes allowed
 * @param execute instruction fetches allowed
 * @param user    reachable from the unprivileged level (EL0, CPL 3, U-mode); otherwise privileged only
 * @param cache   the memory type
 */
public record Attributes(boolean read, boolean write, boolean execute, boolean user, CachePolicy cache) {

    /** Privileged read-write write-back memory, the usual DMA buffer. */
    public static final Attributes RW = new Attributes(true, true, false, false, CachePolicy.WRITE_BACK);
    /** Privileged read-only write-back memory. */
    public static final Attributes RO = new Attributes(true, false, false, false, CachePolicy.WRITE_BACK);
    /** Privileged read-write-execute write-back memory. */
    public static final Attributes RWX = new Attributes(true, true, true, false, CachePolicy.WRITE_BACK);

    /** Requires a cache policy. */
    public Attributes {
        Objects.requireNonNull(cache, "cache");
    }

    /**
     * Parses the CLI spelling: three characters {@code r|-}, {@code w|-}, {@code x|-}, optionally followed by
     * {@code u} for user access, e.g. {@code rw-}, {@code r-x}, {@code rwxu}. Write-back memory.
     *
     * @param perms the text, e.g. {@code rw-}
     * @return the attributes it spells
     * @throws IllegalArgumentException naming the bad text
     */
    public static Attributes parse(String perms) {
        Objects.requireNonNull(perms, "perms");
        boolean user = perms.length() == 4 && perms.charAt(3) == 'u';
        if (perms.length() != 3 && !user) {
            throw new IllegalArgumentException("perms=" + perms + " must be like rw-, r-x or rwxu");
        }
        return new Attributes(flag(perms, 0, 'r'), flag(perms, 1, 'w'), flag(perms, 2, 'x'), user, CachePolicy.WRITE_BACK);
    }

    private static boolean flag(String perms, int i, char c) {
        char got = perms.charAt(i);
        if (got == c) {
            return true;
        }
        if (got == '-') {
            return false;
        }
        throw new IllegalArgumentException("perms=" + perms + ": position " + i + " must be '" + c + "' or '-'");
    }

    /**
     * {@return a copy with another cache policy}
     *
     * @param policy the cache policy of the copy
     */
    public Attributes with(CachePolicy policy) {
        return new Attributes(read, write, execute, user, policy);
    }

    /**
     * {@return a copy with user access set as given}
     *
     * @param userAccess whether the copy allows unprivileged access
     */
    public Attributes withUser(boolean userAccess) {
        return new Attributes(read, write, execute, userAccess, cache);
    }

    /**
     * {@return whether these permissions allow {@code access} from the given privilege}
     *
     * @param access   the kind of access
     * @param fromUser whether it comes from the unprivileged level
     */
    public boolean allows(Access access, boolean fromUser) {
        if (fromUser && !user) {
            return false;
        }
        return switch (access) {
            case READ -> read;
            case WRITE -> write;
            case EXECUTE -> execute;
        };
    }

    /** {@return the CLI spelling, e.g. {@code rw-u/WRITE_BACK}} */
    @Override
    public String toString() {
        return (read ? "r" : "-") + (write ? "w" : "-") + (execute ? "x" : "-") + (user ? "u" : "") + "/" + cache;
    }
}
