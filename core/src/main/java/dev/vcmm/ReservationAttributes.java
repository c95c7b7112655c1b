package dev.vcmm;

import dev.vcmm.pagetable.Attributes;
import dev.vcmm.pagetable.CachePolicy;

import java.util.Objects;

/**
 * What a reservation allows and how its memory is cached: read, write, execute, user and supervisor access,
 * secure, and the cache policy. Built fluently from {@link #RW}, e.g.
 * {@code ReservationAttributes.RW.withUser(true).with(Caching.WRITE_THROUGH)}.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param read       reads allowed
 * @param write      writes allowed
 * @param execute    instruction fetches allowed
 * @param user       unprivileged (user) access allowed
 * @param supervisor privileged access allowed; formats always allow privileged access to user mappings
 * @param secure     the reservation may be backed by secure memory (and only secure devices reach that)
 * @param caching    the cache policy
 */
public record ReservationAttributes(boolean read, boolean write, boolean execute, boolean user, boolean supervisor,
                                   boolean secure, Caching caching) {

    /** Read-write, supervisor only, write-back: the usual DMA buffer. */
    public static final ReservationAttributes RW = new ReservationAttributes(true, true, false, false, true, false,
        Caching.WRITE_BACK_WRITE_ALLOCATE);
    /** Read-only, supervisor only, write-back. */
    public static final ReservationAttributes RO = RW.withWrite(false);

    /** Validates the combination. */
    public ReservationAttributes {
        Objects.requireNonNull(caching, "caching");
        if (!user && !supervisor) {
            throw new IllegalArgumentException("attributes allow neither user nor supervisor access");
        }
    }

    /**
     * {@return a copy with write set as given}
     *
     * @param w whether writes are allowed
     */
    public ReservationAttributes withWrite(boolean w) {
        return new ReservationAttributes(read, w, execute, user, supervisor, secure, caching);
    }

    /**
     * {@return a copy with execute set as given}
     *
     * @param x whether execution is allowed
     */
    public ReservationAttributes withExecute(boolean x) {
        return new ReservationAttributes(read, write, x, user, supervisor, secure, caching);
    }

    /**
     * {@return a copy with user access set as given}
     *
     * @param u whether unprivileged accesses are allowed
     */
    public ReservationAttributes withUser(boolean u) {
        return new ReservationAttributes(read, write, execute, u, supervisor, secure, caching);
    }

    /**
     * {@return a copy with secure set as given}
     *
     * @param s whether the reservation is secure
     */
    public ReservationAttributes withSecure(boolean s) {
        return new ReservationAttributes(read, write, execute, user, supervisor, s, caching);
    }

    /**
     * {@return a copy with another cache policy}
     *
     * @param c the cache policy
     */
    public ReservationAttributes with(Caching c) {
        return new ReservationAttributes(read, write, execute, user, supervisor, secure, c);
    }

    /** {@return the page-table attributes these encode to} */
    public Attributes toPageAttributes() {
        return pageAttributes(read, write, execute, user, caching.toCachePolicy());
    }

    /**
     * The page-table attributes, one immutable instance per combination (4 flags x 4 policies), made on first use
     * (a benign race: two threads may each make one, equal): the back path allocates none.
     */
    private static final int POLICIES = CachePolicy.values().length;
    private static final Attributes[] PAGE_ATTRIBUTES = new Attributes[16 * POLICIES];

    private static Attributes pageAttributes(boolean read, boolean write, boolean execute, boolean user, CachePolicy c) {
        int i = ((read ? 1 : 0) | (write ? 2 : 0) | (execute ? 4 : 0) | (user ? 8 : 0)) * POLICIES
            + c.ordinal();
        Attributes a = PAGE_ATTRIBUTES[i];
        if (a == null) {
            a = new Attributes(read, write, execute, user, c); // a record: final fields, safely published
            PAGE_ATTRIBUTES[i] = a;
        }
        return a;
    }

    /**
     * @return the page-table attributes of a mapping of {@code memory} (may be null: not backed): these, with a
     *         cacheable policy lowered to non-cached when the memory was allocated coherent
     */
    Attributes toPageAttributes(PhysMem memory) {
        boolean cacheable = caching != Caching.NON_CACHED && caching != Caching.DEVICE;
        CachePolicy c = memory != null && memory.options().coherent() && cacheable
            ? Caching.NON_CACHED.toCachePolicy() : caching.toCachePolicy();
        return pageAttributes(read, write, execute, user, c);
    }

    @Override
    public String toString() {
        return (read ? "r" : "-") + (write ? "w" : "-") + (execute ? "x" : "-") + (user ? "u" : "") + (supervisor ? "s" : "")
            + (secure ? " secure" : "") + " " + caching;
    }
}
