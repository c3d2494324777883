#ifndef QCOWKIT_CSYSTEMSHIMS_H
#define QCOWKIT_CSYSTEMSHIMS_H
/* Linux calls and constants that Glibc's Swift module hides behind _GNU_SOURCE.
 * Only IO/ (BlockFile.swift, FallocateMode.swift, FileLockBytes.swift, FileDirectIO.swift) and the
 * NBD target's KernelNBDClient.swift use them; QcowKitCommands' MallocArenas.swift
 * limits malloc's arenas. */
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/falloc.h> /* FALLOC_FL_KEEP_SIZE, _PUNCH_HOLE, _ZERO_RANGE */
#include <linux/fs.h>     /* SEEK_DATA, SEEK_HOLE */
#include <fcntl.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <linux/nbd.h>    /* NBD_SET_SOCK, ...: the kernel's NBD client (qemu-nbd -c) */
#include <malloc.h>       /* mallopt, M_ARENA_MAX */

/* mallopt(M_ARENA_MAX, n): at most n malloc arenas (MallocArenas.swift). */
static inline int qk_limit_malloc_arenas(int n) {
    return mallopt(M_ARENA_MAX, n);
}

/* fallocate(2): punch holes and zero ranges in image files. */
static inline int qk_fallocate(int fd, int mode, long long offset, long long length) {
    return (int)syscall(SYS_fallocate, fd, mode, offset, length);
}

/* Open file description locks, one byte at `start` (the file driver's lock
 * bytes, FileLockBytes.swift). The command numbers are Linux's ABI; glibc
 * defines them only under _GNU_SOURCE. */
#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif

/* F_OFD_SETLK: takes (F_RDLCK) or drops (F_UNLCK) the byte; 0 or -errno. */
static inline int qk_ofd_set(int fd, long long start, short type) {
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = 1 };
    int rc;
    do { rc = fcntl(fd, F_OFD_SETLK, &fl); } while (rc == -1 && errno == EINTR);
    return rc == -1 ? -errno : 0;
}

/* F_OFD_GETLK with an exclusive lock: 1 when another open file description
 * holds a lock on the byte, 0 when none does, or -errno. */
static inline int qk_ofd_held_elsewhere(int fd, long long start) {
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = 1 };
    int rc;
    do { rc = fcntl(fd, F_OFD_GETLK, &fl); } while (rc == -1 && errno == EINTR);
    if (rc == -1) return -errno;
    return fl.l_type != F_UNLCK;
}

/* O_DIRECT (glibc names it only under _GNU_SOURCE; __O_DIRECT is the
 * architecture's value): cache=none/directsync opens (FileDirectIO.swift). */
static inline int qk_o_direct(void) { return __O_DIRECT; }

/* copy_file_range(2): copy offloading for qemu-img convert -C. */
static inline long long qk_copy_file_range(int in, long long *in_offset, int out, long long *out_offset,
                                           unsigned long length) {
    return (long long)syscall(SYS_copy_file_range, in, in_offset, out, out_offset, length, 0u);
}

/* ioctl(2) with one integer argument (C's ioctl is variadic, which Swift
 * cannot call), and the request numbers the kernel's NBD client takes
 * (function-like macros, which Swift cannot import). */
static inline int qk_ioctl(int fd, unsigned long request, unsigned long argument) {
    return ioctl(fd, request, argument);
}
static const unsigned long qk_nbd_set_sock = NBD_SET_SOCK;
static const unsigned long qk_nbd_set_blksize = NBD_SET_BLKSIZE;
static const unsigned long qk_nbd_set_size_blocks = NBD_SET_SIZE_BLOCKS;
static const unsigned long qk_nbd_set_flags = NBD_SET_FLAGS;
static const unsigned long qk_nbd_do_it = NBD_DO_IT;
static const unsigned long qk_nbd_clear_que = NBD_CLEAR_QUE;
static const unsigned long qk_nbd_clear_sock = NBD_CLEAR_SOCK;
static const unsigned long qk_nbd_disconnect = NBD_DISCONNECT;
static const unsigned long qk_blkroset = BLKROSET;
#endif
