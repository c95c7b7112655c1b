package dev.vcmm;

/**
 * Thrown when a {@link MemoryType} cannot supply a physical allocation. Allocation is all-or-nothing:
 * by the time this is thrown, everything taken for the request has been given back.
 *
 * <p><b>Thread-safety:</b> immutable once thrown.
 */
public final class VcmmOutOfMemoryException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    /** The name of the memory type that ran out. */
    private final String memoryType;
    /** The length the caller asked for. */
    private final long requestedLength;
    /** The bytes obtained (and given back) before the allocation failed. */
    private final long obtainedBytes;

    /**
     * Makes the exception.
     *
     * @param memoryType      the memory type's name
     * @param requestedLength the length the caller asked for
     * @param obtainedBytes   bytes obtained (and given back) before the allocation failed
     * @param message         the full message
     */
    public VcmmOutOfMemoryException(String memoryType, long requestedLength, long obtainedBytes, String message) {
        super(message);
        this.memoryType = memoryType;
        this.requestedLength = requestedLength;
        this.obtainedBytes = obtainedBytes;
    }

    /** {@return the name of the memory type that ran out.} */
    public String memoryType() {
        return memoryType;
    }

    /** {@return the length the caller asked for, in bytes.} */
    public long requestedLength() {
        return requestedLength;
    }

    /** {@return the bytes obtained, and given back, before the allocation failed.} */
    public long obtainedBytes() {
        return obtainedBytes;
    }
}
