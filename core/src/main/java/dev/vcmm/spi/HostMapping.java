package dev.vcmm.spi;

/**
 * Physical memory mapped into a reserved range of the process by a {@link HostMapper}: the backing of one
 * HOST reservation. The implementation hands out views of the range (e.g. memory segments) whose lifetime
 * ends when the mapping is closed.
 *
 * <p><b>Thread-safety:</b> thread-safe. {@link #close()} first ends every view (an access through one
 * afterwards fails with an {@link IllegalStateException}, never touches the range), then returns the
 * range to no access, so nothing else can land there until the range is released.
 */
public interface HostMapping extends AutoCloseable {

    /** {@return the address of the first byte} */
    long address();

    /** {@return the length in bytes} */
    long length();

    /** {@return whether {@link #close()} has completed} */
    boolean isClosed();

    /**
     * Ends every view, then takes the memory away (no access). Idempotent.
     *
     * @throws IllegalStateException if a view is in use and cannot be ended now (e.g. held by a native call);
     *                               the mapping then stays as it was
     */
    @Override
    void close();
}
