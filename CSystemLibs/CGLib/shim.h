#ifndef QCOWKIT_CGLIB_SHIM_H
#define QCOWKIT_CGLIB_SHIM_H
#include <glib.h>
#include <glib-unix.h>

/* G_SOURCE_REMOVE / G_SOURCE_CONTINUE are macros over gboolean. */
static inline gboolean qk_g_source_remove(void) { return G_SOURCE_REMOVE; }
static inline gboolean qk_g_source_continue(void) { return G_SOURCE_CONTINUE; }
#endif
