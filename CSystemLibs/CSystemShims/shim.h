#ifndef QCOWKIT_CSYSTEMSHIMS_H
#define QCOWKIT_CSYSTEMSHIMS_H
/* Linux calls and constants that Glibc's Swift module hides behind _GNU_SOURCE.
 * Only IO/ (BlockFile.swift, FallocateMode.swift) uses them. */
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/falloc.h> /* FALLOC_FL_KEEP_SIZE, _PUNCH_HOLE, _ZERO_RANGE */
#include <linux/fs.h>     /* SEEK_DATA, SEEK_HOLE */

/* fallocate(2): punch holes and zero ranges in image files. */
static inline int qk_fallocate(int fd, int mode, long long offset, long long length) {
    return (int)syscall(SYS_fallocate, fd, mode, offset, length);
}

/* copy_file_range(2): copy offloading for qemu-img convert -C. */
static inline long long qk_copy_file_range(int in, long long *in_offset, int out, long long *out_offset,
                                           unsigned long length) {
    return (long long)syscall(SYS_copy_file_range, in, in_offset, out, out_offset, length, 0u);
}
#endif
