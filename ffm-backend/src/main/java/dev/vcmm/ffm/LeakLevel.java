package dev.vcmm.ffm;

/**
 * How closely a {@link SegmentPool} watches for segments and arenas dropped without {@link SegmentPool#free} or
 * {@link java.lang.foreign.Arena#close()}, after Netty's {@code ResourceLeakDetector.Level}. Chosen with
 * {@link SegmentPool.Builder#leakDetection}; the default is the system property {@value #PROPERTY}
 * ({@code DISABLED}, {@code SIMPLE} or {@code PARANOID}, case-insensitive), else {@link #DISABLED}.
 *
 * <p><b>Thread-safety:</b> an immutable enum.
 */
public enum LeakLevel {
    /** Nothing is tracked; the pool's fast paths pay one null check. */
    DISABLED,
    /** One allocation (segment or arena) in {@link SegmentPool.Builder#leakSamplingInterval} (128 by default) is tracked. */
    SIMPLE,
    /** Every allocation is tracked: for tests and debugging (each costs a stack trace and an automatic arena). */
    PARANOID;

    /** The system property that sets the default level. */
    public static final String PROPERTY = "vcmm.pool.leakDetection";

    /**
     * Reads the level from the system property {@value #PROPERTY}.
     *
     * @return the level named by {@value #PROPERTY}, or {@link #DISABLED} if it is not set
     * @throws IllegalArgumentException if it is set to something else than a level's name
     */
    public static LeakLevel fromSystemProperty() {
        String v = System.getProperty(PROPERTY);
        if (v == null || v.isBlank()) {
            return DISABLED;
        }
        for (LeakLevel l : values()) {
            if (l.name().equalsIgnoreCase(v.trim())) {
                return l;
            }
        }
        throw new IllegalArgumentException(PROPERTY + "=" + v + " must be one of DISABLED, SIMPLE, PARANOID");
    }
}
