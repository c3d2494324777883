#ifndef QCOWKIT_CZLIB_SHIM_H
#define QCOWKIT_CZLIB_SHIM_H
#include <zlib.h>

/* inflateInit2 / deflateInit2 are macros (they pass the library version and the
 * stream size): Swift cannot call them, so they become inline functions here. */
static inline int qk_inflateInit2(z_streamp strm, int windowBits) {
    return inflateInit2(strm, windowBits);
}

static inline int qk_deflateInit2(z_streamp strm, int level, int method,
                                  int windowBits, int memLevel, int strategy) {
    return deflateInit2(strm, level, method, windowBits, memLevel, strategy);
}
#endif
