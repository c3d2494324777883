#ifndef QCOWKIT_CSYSTEMSHIMS_H
#define QCOWKIT_CSYSTEMSHIMS_H
/* Linux calls that Glibc's Swift module hides behind _GNU_SOURCE. */
#include <sys/syscall.h>
#include <unistd.h>

/* fallocate(2): punch holes and zero ranges in image files. */
static inline int qk_fallocate(int fd, int mode, long long offset, long long length) {
    return (int)syscall(SYS_fallocate, fd, mode, offset, length);
}
#endif
