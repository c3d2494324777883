#ifndef QCOWKIT_CZSTD_SHIM_H
#define QCOWKIT_CZSTD_SHIM_H
/* ZSTD_decompressBound and friends sit behind ZSTD_STATIC_LINKING_ONLY. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#endif
