// glibc gives a thread that meets contention in malloc an arena of its own,
// and each such arena reserves 64 MiB of address space: convert's workers
// alone could reserve half a GiB. Under an address-space limit (ulimit -v),
// where qemu-img answers, a run then failed to allocate a 2 MiB buffer.
// The request paths allocate nothing per request, so two arenas (the main
// one and one more) cost nothing measurable.
import CSystemShims

enum MallocArenas {
    static func limit() { _ = qk_limit_malloc_arenas(2) }
}
