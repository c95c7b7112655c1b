package dev.vcmm.ffm;

import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.Locale;

/**
 * The few libc calls the off-heap memory needs on Linux, as {@link Linker} downcalls: {@code memfd_create},
 * {@code ftruncate}, {@code lseek} (to find the holes of a sparse memfd) and {@code close}, and for HOST VCMs {@code mmap}, {@code munmap} and
 * {@code getpagesize}, with {@code errno} captured and turned into a message by {@code strerror}.
 *
 * <p><b>Thread-safety:</b> stateless; every method may be called from any thread. The handles are
 * looked up once; on a system without {@code memfd_create} (not Linux, or a libc older than glibc 2.27)
 * {@link #HAS_MEMFD} is false and the calls must not be made.
 */
final class Libc {

    /** {@code MFD_CLOEXEC} from {@code <linux/memfd.h>}: the fd is not inherited across exec. */
    static final int MFD_CLOEXEC = 0x0001;

    /** The longest name memfd_create accepts, 249 bytes ({@code MFD_NAME_MAX_LEN} in mm/memfd.c). */
    static final int MFD_NAME_MAX = 249;

    /** {@code SEEK_DATA} from {@code <unistd.h>} (Linux 3.1): the next offset at or after the given one holding data. */
    static final int SEEK_DATA = 3;
    /** {@code SEEK_HOLE}: the next offset at or after the given one in a hole (the file's end counts as one). */
    static final int SEEK_HOLE = 4;
    /** {@code ENXIO}: for SEEK_DATA, no data at or after the offset. */
    static final int ENXIO = 6;

    /** Whether {@link #memfdCreate}, {@link #ftruncate} and {@link #close} can be called here. */
    static final boolean HAS_MEMFD;

    /** {@code PROT_NONE} from {@code <sys/mman.h>}: no access. */
    static final int PROT_NONE = 0;
    /** {@code MAP_SHARED}: stores reach the file (here: the memfd other mappings see). */
    static final int MAP_SHARED = 0x01;
    /** {@code MAP_PRIVATE}: a private copy-on-write mapping. */
    static final int MAP_PRIVATE = 0x02;
    /** {@code MAP_FIXED}: exactly at the address, replacing what was there (atomically, no gap). */
    static final int MAP_FIXED = 0x10;
    /** {@code MAP_ANONYMOUS}: no file. */
    static final int MAP_ANONYMOUS = 0x20;
    /** {@code MAP_NORESERVE}: no swap space reserved (and none is needed for {@code PROT_NONE}). */
    static final int MAP_NORESERVE = 0x4000;

    /**
     * Why {@link #mmap}, {@link #munmap} and {@link #pageSize} cannot be called here, or {@code null}. The flag
     * values above are the asm-generic ones, which x86-64, aarch64 and riscv64 share; other architectures
     * (mips, sparc, powerpc, alpha) number some differently and are refused rather than guessed.
     */
    static final String MMAP_UNAVAILABLE;

    /** {@code void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)}, errno captured. */
    private static final MethodHandle MMAP;
    /** {@code int munmap(void *addr, size_t length)}, errno captured. */
    private static final MethodHandle MUNMAP;
    /** {@code int getpagesize(void)}. */
    private static final MethodHandle GETPAGESIZE;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT
        .varHandle(java.lang.foreign.MemoryLayout.PathElement.groupElement("errno")).withInvokeExactBehavior();

    /** {@code int memfd_create(const char *name, unsigned int flags)}, errno captured. */
    private static final MethodHandle MEMFD_CREATE;
    /** {@code int ftruncate(int fd, off_t length)}, errno captured. */
    private static final MethodHandle FTRUNCATE;
    /** {@code int close(int fd)}, errno captured. */
    private static final MethodHandle CLOSE;
    /** {@code off_t lseek(int fd, off_t offset, int whence)}, errno captured. */
    private static final MethodHandle LSEEK;
    /** {@code fallocate(2)}; null where the C library lacks it. */
    private static final MethodHandle FALLOCATE;
    /** {@code FALLOC_FL_KEEP_SIZE}: the file keeps its length. */
    static final int FALLOC_FL_KEEP_SIZE = 0x01;
    /** {@code FALLOC_FL_PUNCH_HOLE}: deallocate the range (it then reads as zeros); needs KEEP_SIZE. */
    static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    /** {@code char *strerror(int errnum)}. */
    private static final MethodHandle STRERROR;

    static {
        boolean linux = System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("linux");
        SymbolLookup libc = LINKER.defaultLookup();
        Linker.Option errno = Linker.Option.captureCallState("errno");
        MEMFD_CREATE = linux ? downcall(libc, "memfd_create",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT), errno) : null;
        FTRUNCATE = linux ? downcall(libc, "ftruncate",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG), errno) : null;
        CLOSE = linux ? downcall(libc, "close",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), errno) : null;
        LSEEK = linux ? downcall(libc, "lseek", FunctionDescriptor.of(ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT), errno) : null;
        FALLOCATE = linux ? downcall(libc, "fallocate", FunctionDescriptor.of(ValueLayout.JAVA_INT,
            ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), errno) : null;
        STRERROR = linux ? downcall(libc, "strerror",
            FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_INT)) : null;
        HAS_MEMFD = MEMFD_CREATE != null && FTRUNCATE != null && CLOSE != null && STRERROR != null;
        String arch = System.getProperty("os.arch", "");
        boolean genericFlags = arch.equals("amd64") || arch.equals("x86_64") || arch.equals("aarch64") || arch.equals("riscv64");
        MMAP = linux && genericFlags ? downcall(libc, "mmap", FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS,
            ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG), errno) : null;
        MUNMAP = linux && genericFlags ? downcall(libc, "munmap",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG), errno) : null;
        GETPAGESIZE = linux && genericFlags ? downcall(libc, "getpagesize", FunctionDescriptor.of(ValueLayout.JAVA_INT)) : null;
        MMAP_UNAVAILABLE = !linux ? "HOST mappings need Linux (mmap of a memfd); this is " + System.getProperty("os.name")
            : !genericFlags ? "HOST mappings support x86-64, aarch64 and riscv64 Linux; this is " + arch
            : MMAP == null || MUNMAP == null || GETPAGESIZE == null ? "the C library lacks mmap, munmap or getpagesize"
            : !HAS_MEMFD ? "the C library lacks memfd_create (glibc 2.27 or newer needed)" : null;
    }

    private Libc() {
    }

    private static MethodHandle downcall(SymbolLookup lookup, String name, FunctionDescriptor fd, Linker.Option... options) {
        return lookup.find(name).map(symbol -> LINKER.downcallHandle(symbol, fd, options)).orElse(null);
    }

    /**
     * Creates an anonymous memory file of size 0 with {@code MFD_CLOEXEC}.
     *
     * @param name shown in {@code /proc/<pid>/fd} as {@code memfd:<name>}; cut to 249 bytes
     * @return the new file descriptor
     * @throws UncheckedIOException naming the call and errno if the kernel refuses
     */
    static int memfdCreate(String name) {
        String shortName = name.length() > MFD_NAME_MAX ? name.substring(0, MFD_NAME_MAX) : name;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE_LAYOUT);
            MemorySegment cName = arena.allocateFrom(shortName.replace('\0', '_'));
            int fd = (int) MEMFD_CREATE.invokeExact(state, cName, MFD_CLOEXEC);
            if (fd < 0) {
                throw failure("memfd_create(\"" + shortName + "\", MFD_CLOEXEC)", errno(state));
            }
            return fd;
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("memfd_create downcall", t);
        }
    }

    /**
     * Sets the size of the file {@code fd}; growing a memfd allocates nothing until pages are touched.
     *
     * @throws UncheckedIOException naming the call and errno if the kernel refuses
     */
    static void ftruncate(int fd, long length) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE_LAYOUT);
            int rc = (int) FTRUNCATE.invokeExact(state, fd, length);
            if (rc != 0) {
                throw failure("ftruncate(" + fd + ", " + length + ")", errno(state));
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("ftruncate downcall", t);
        }
    }

    /**
     * Closes {@code fd}.
     *
     * @throws UncheckedIOException naming the call and errno if the kernel refuses (e.g. EBADF)
     */
    static void close(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE_LAYOUT);
            int rc = (int) CLOSE.invokeExact(state, fd);
            if (rc != 0) {
                throw failure("close(" + fd + ")", errno(state));
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("close downcall", t);
        }
    }

    /** Whether {@link #seekData} can be called here. */
    static boolean hasSeekData() {
        return LSEEK != null && HAS_MEMFD;
    }

    /**
     * {@code lseek(fd, offset, whence)} with {@link #SEEK_DATA} or {@link #SEEK_HOLE}: where the next data or hole of
     * a sparse file starts. On a tmpfs memfd a hole is a page never allocated (it reads as zero); a swapped-out page
     * counts as data.
     *
     * @return the offset found; -1 for SEEK_DATA when no data follows {@code offset} (ENXIO)
     * @throws UncheckedIOException naming the call and errno if the kernel refuses (e.g. EINVAL where unsupported)
     */
    static long seekData(int fd, long offset, int whence) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE_LAYOUT);
            long at = (long) LSEEK.invokeExact(state, fd, offset, whence);
            if (at < 0) {
                int errno = errno(state);
                if (errno == ENXIO && whence == SEEK_DATA) {
                    return -1;
                }
                throw failure(String.format("lseek(%d, 0x%x, %s)", fd, offset, whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE"), errno);
            }
            return at;
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("lseek downcall", t);
        }
    }

    /** {@return whether {@link #punchHole} can be called} */
    static boolean hasPunchHole() {
        return FALLOCATE != null && HAS_MEMFD;
    }

    /**
     * {@code fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)}: gives the pages of the range
     * back to the system; on a tmpfs memfd they then read as zeros, also through existing mappings.
     *
     * @throws UncheckedIOException naming the call and errno if the kernel refuses
     */
    static void punchHole(int fd, long offset, long length) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE_LAYOUT);
            int rc = (int) FALLOCATE.invokeExact(state, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
            if (rc != 0) {
                throw failure(String.format("fallocate(%d, PUNCH_HOLE|KEEP_SIZE, 0x%x, 0x%x)", fd, offset, length), errno(state));
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("fallocate downcall", t);
        }
    }

    /**
     * {@code mmap(2)}.
     *
     * @return the address of the mapping
     * @throws UncheckedIOException naming the call and errno if the kernel refuses
     */
    static long mmap(long address, long length, int prot, int flags, int fd, long offset) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE_LAYOUT);
            MemorySegment at = (MemorySegment) MMAP.invokeExact(state, MemorySegment.ofAddress(address), length, prot, flags, fd, offset);
            if (at.address() == -1L) { // MAP_FAILED
                throw failure(String.format("mmap(0x%x, 0x%x, prot=%d, flags=0x%x, fd=%d, offset=0x%x)",
                    address, length, prot, flags, fd, offset), errno(state));
            }
            return at.address();
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("mmap downcall", t);
        }
    }

    /**
     * {@code munmap(2)}.
     *
     * @throws UncheckedIOException naming the call and errno if the kernel refuses
     */
    static void munmap(long address, long length) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE_LAYOUT);
            int rc = (int) MUNMAP.invokeExact(state, MemorySegment.ofAddress(address), length);
            if (rc != 0) {
                throw failure(String.format("munmap(0x%x, 0x%x)", address, length), errno(state));
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("munmap downcall", t);
        }
    }

    /** {@return the system's page size, {@code getpagesize()}} */
    static long pageSize() {
        try {
            return (int) GETPAGESIZE.invokeExact();
        } catch (Throwable t) {
            throw new AssertionError("getpagesize downcall", t);
        }
    }

    private static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    private static UncheckedIOException failure(String call, int errno) {
        return new UncheckedIOException(new java.io.IOException(call + " failed: errno " + errno + " (" + strerror(errno) + ")"));
    }

    /** {@return the C library's description of {@code errno}, e.g. "Too many open files"} */
    static String strerror(int errno) {
        try {
            MemorySegment text = (MemorySegment) STRERROR.invokeExact(errno);
            return text.equals(MemorySegment.NULL) ? "unknown error" : text.reinterpret(1024).getString(0);
        } catch (Throwable t) {
            return "strerror failed: " + t;
        }
    }
}
