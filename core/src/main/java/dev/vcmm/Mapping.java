package dev.vcmm;

/**
 * One place a physical byte is mapped: a reservation and the device address in its VCM that reaches it.
 *
 * <p><b>Thread-safety:</b> immutable.
 *
 * @param reservation the backed reservation
 * @param address     the device (VCM) address that maps the physical byte asked about
 */
public record Mapping(Reservation reservation, long address) {
}
