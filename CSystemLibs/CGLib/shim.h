#ifndef QCOWKIT_CGLIB_SHIM_H
#define QCOWKIT_CGLIB_SHIM_H
/* GLib's main loop for serve's QMP monitor (Sources/QMP/Loop).
 *
 * The library is not linked: loading GLib (and PCRE2 under it) and running
 * its constructors cost every qcowkit process some 750 KiB of resident
 * memory, and only `serve` runs a main loop. GLibLibrary.swift opens it with
 * dlopen when the first MainLoop is made and calls through the table
 * QK_DL_TABLE declares.
 *
 * GLib's own headers need pkg-config's include flags, and pkg-config would
 * link the library as well, so the few types and functions used are
 * declared here as GLib 2 defines them (stable ABI; g_unix_fd_source_new
 * since 2.36). GMainContext, GMainLoop and GSource stay opaque. */
#include "../CSystemShims/dl_table.h"

typedef int gboolean;
typedef int gint;
typedef unsigned int guint;
typedef void *gpointer;

typedef struct _GMainContext GMainContext;
typedef struct _GMainLoop GMainLoop;
typedef struct _GSource GSource;

typedef enum {
    G_IO_IN = 1,
    G_IO_OUT = 4,
    G_IO_PRI = 2,
    G_IO_ERR = 8,
    G_IO_HUP = 16,
    G_IO_NVAL = 32,
} GIOCondition;

/* G_SOURCE_CONTINUE and G_SOURCE_REMOVE. */
static const gboolean qk_g_source_continue = 1;
static const gboolean qk_g_source_remove = 0;

typedef gboolean (*GSourceFunc)(gpointer _Nullable user_data);
typedef void (*GDestroyNotify)(gpointer _Nullable data);

GMainContext *_Nonnull g_main_context_new(void);
GMainContext *_Nonnull g_main_context_ref(GMainContext *_Nonnull context);
void g_main_context_unref(GMainContext *_Nonnull context);
void g_main_context_push_thread_default(GMainContext *_Nullable context);
void g_main_context_pop_thread_default(GMainContext *_Nullable context);
GMainLoop *_Nonnull g_main_loop_new(GMainContext *_Nullable context, gboolean is_running);
GMainLoop *_Nonnull g_main_loop_ref(GMainLoop *_Nonnull loop);
void g_main_loop_unref(GMainLoop *_Nonnull loop);
void g_main_loop_run(GMainLoop *_Nonnull loop);
void g_main_loop_quit(GMainLoop *_Nonnull loop);
GSource *_Nonnull g_unix_fd_source_new(gint fd, GIOCondition condition);
GSource *_Nonnull g_unix_signal_source_new(gint signum);
GSource *_Nonnull g_timeout_source_new(guint interval);
GSource *_Nonnull g_idle_source_new(void);
void g_source_set_callback(GSource *_Nonnull source, GSourceFunc _Nullable func, gpointer _Nullable data,
                           GDestroyNotify _Nullable notify);
guint g_source_attach(GSource *_Nonnull source, GMainContext *_Nullable context);
void g_source_destroy(GSource *_Nonnull source);
void g_source_unref(GSource *_Nonnull source);

/* Every GLib function Sources/QMP/Loop calls. */
#define QK_GLIB_FUNCTIONS(X) \
    X(g_idle_source_new) \
    X(g_main_context_new) \
    X(g_main_context_pop_thread_default) \
    X(g_main_context_push_thread_default) \
    X(g_main_context_ref) \
    X(g_main_context_unref) \
    X(g_main_loop_new) \
    X(g_main_loop_quit) \
    X(g_main_loop_ref) \
    X(g_main_loop_run) \
    X(g_main_loop_unref) \
    X(g_source_attach) \
    X(g_source_destroy) \
    X(g_source_set_callback) \
    X(g_source_unref) \
    X(g_timeout_source_new) \
    X(g_unix_fd_source_new) \
    X(g_unix_signal_source_new)

QK_DL_TABLE(qk_glib, QK_GLIB_FUNCTIONS)

#endif
