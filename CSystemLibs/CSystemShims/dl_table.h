#ifndef QCOWKIT_DL_TABLE_H
#define QCOWKIT_DL_TABLE_H
/* One way to use a C library that is opened with dlopen on first use rather
 * than linked (GnuTLS for TLS, GLib for serve's main loop): linking a library
 * loads it, its dependencies and their constructors into every qcowkit
 * process, which costs start-up time and resident memory in the verbs that
 * never call it.
 *
 * QK_DL_TABLE(prefix, LIST), where LIST(X) applies X to every function name,
 * declares `struct prefix_functions` (one typed pointer per function, named
 * as the function) and `prefix_load(soname, &functions, &failure)`, which
 * opens the library and resolves every name. `__typeof__(name)` takes each
 * function's type from its declaration without referencing its symbol. The
 * library stays loaded for the life of the process. */
#include <dlfcn.h>

enum qk_dl_status {
    QK_DL_LOADED = 0,
    QK_DL_NOT_FOUND = 1,       /* dlopen failed; *failure is dlerror()'s text */
    QK_DL_MISSING_SYMBOL = 2,  /* *failure names the function the library lacks */
};

#define QK_DL_FIELD(name) __typeof__(name) *_Nonnull name;

#define QK_DL_RESOLVE(name) \
    symbol = dlsym(handle, #name); \
    if (symbol == NULL) { \
        *failure = #name; \
        dlclose(handle); \
        return QK_DL_MISSING_SYMBOL; \
    } \
    functions->name = (__typeof__(name) *)symbol;

#define QK_DL_TABLE(prefix, LIST) \
    struct prefix##_functions { LIST(QK_DL_FIELD) }; \
    static inline enum qk_dl_status prefix##_load(const char *_Nonnull soname, \
                                                  struct prefix##_functions *_Nonnull functions, \
                                                  const char *_Nullable *_Nonnull failure) { \
        void *_Nullable handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL); \
        if (handle == NULL) { \
            *failure = dlerror(); \
            return QK_DL_NOT_FOUND; \
        } \
        void *_Nullable symbol; \
        LIST(QK_DL_RESOLVE) \
        return QK_DL_LOADED; \
    }

#endif
