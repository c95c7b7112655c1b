package dev.vcmm;

import java.util.Arrays;

/**
 * A device's PASID table (an SMMUv3 context-descriptor table, a VT-d PASID table): PASID -> the association whose
 * VCM is programmed for it. PASID 0 is not here: the default association lives in the device's low and high slots.
 *
 * <p><b>Thread-safety:</b> copy-on-write. Changes ({@link #put}, {@link #remove}) are made under the {@link Vcmm}'s
 * graph lock and publish a new immutable snapshot with one volatile write; {@link #get} is one volatile read and a
 * binary search, with no lock, from any thread (a walk sees the table before or after a change, never half of it).
 */
final class PasidTable {

    /** An immutable snapshot: PASIDs ascending, and the association of each. */
    private record Snapshot(int[] pasids, Association[] associations) {
    }

    private static final Snapshot EMPTY = new Snapshot(new int[0], new Association[0]);

    private volatile Snapshot snapshot = EMPTY;

    /** @return the association programmed for {@code pasid}, or {@code null} */
    Association get(int pasid) {
        Snapshot s = snapshot;
        int i = Arrays.binarySearch(s.pasids, pasid);
        return i < 0 ? null : s.associations[i];
    }

    /** @return whether {@code a} is programmed for its PASID */
    boolean holds(Association a) {
        return get(a.pasid()) == a;
    }

    /** @return the number of PASIDs programmed */
    int size() {
        return snapshot.pasids.length;
    }

    /** Programs {@code a} for its PASID, which must be free; caller holds the graph lock. */
    void put(Association a) {
        Snapshot s = snapshot;
        int i = Arrays.binarySearch(s.pasids, a.pasid());
        if (i >= 0) {
            throw new IllegalStateException("pasid=" + a.pasid() + " is programmed already");
        }
        int at = -i - 1;
        int n = s.pasids.length;
        int[] p = new int[n + 1];
        Association[] v = new Association[n + 1];
        System.arraycopy(s.pasids, 0, p, 0, at);
        System.arraycopy(s.associations, 0, v, 0, at);
        p[at] = a.pasid();
        v[at] = a;
        System.arraycopy(s.pasids, at, p, at + 1, n - at);
        System.arraycopy(s.associations, at, v, at + 1, n - at);
        snapshot = new Snapshot(p, v);
    }

    /** Removes {@code a} if it is what its PASID holds; caller holds the graph lock. */
    void remove(Association a) {
        Snapshot s = snapshot;
        int i = Arrays.binarySearch(s.pasids, a.pasid());
        if (i < 0 || s.associations[i] != a) {
            return;
        }
        int n = s.pasids.length;
        int[] p = new int[n - 1];
        Association[] v = new Association[n - 1];
        System.arraycopy(s.pasids, 0, p, 0, i);
        System.arraycopy(s.associations, 0, v, 0, i);
        System.arraycopy(s.pasids, i + 1, p, i, n - i - 1);
        System.arraycopy(s.associations, i + 1, v, i, n - i - 1);
        snapshot = n == 1 ? EMPTY : new Snapshot(p, v);
    }
}
