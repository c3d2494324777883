#!/usr/bin/env bash
# Kills an image-changing verb at every point where it changes a file, for
# qemu-img 7.2 and the built qcowkit alike, and says what `qemu-img check`
# and the guest then see. A tiny LD_PRELOAD library (built here with cc)
# counts the calls that change a regular file (pwrite*, fallocate,
# ftruncate, write) and SIGKILLs the process as the Nth one begins; N runs
# from 1 to the count of an uncut run (every Kth when there are more than
# 250, and always the last three). SIGKILL keeps everything written before
# (the page cache), so each run is the state of a kill at that point.
# Each line covers a range of N with the same outcome: `qemu-img check`
# of every image alone (only when not clean: exit status, "(dirty)" when
# the dirty bit is set, the kinds of error), and whether `img` reads as
# before (`oimg`, an untouched copy) or as after (`aimg`, qemu-img's uncut
# result, for resize and snapshot apply), or NEITHER.
#
#   Scripts/killsweep.sh [CASE...]     (default: every case; see `cases` below)
#   KILLSWEEP_TOOLS="qemu-img" Scripts/killsweep.sh snapshot-delete
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d /tmp/killsweep.XXXXXX)
trap 'rm -rf "$root"' EXIT
qcowkit=${QCOWKIT:-$PWD/.build/debug/qcowkit}
tools=${KILLSWEEP_TOOLS:-qemu-img $qcowkit}

cat > "$root/shim.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static atomic_long calls;
static long kill_at = -1; /* KILL_AT=N; 0 counts into KILL_COUNT_FILE */

static void report(void) {
    const char *path = getenv("KILL_COUNT_FILE");
    FILE *out = path ? fopen(path, "w") : NULL;
    if (out) { fprintf(out, "%ld\n", atomic_load(&calls)); fclose(out); }
}

__attribute__((constructor)) static void init(void) {
    const char *at = getenv("KILL_AT");
    kill_at = at ? atol(at) : -1;
}

static void tick(int fd) {
    struct stat st;
    if (fd <= 2 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    long n = atomic_fetch_add(&calls, 1) + 1;
    if (kill_at == 0) report();
    if (kill_at > 0 && n == kill_at) kill(getpid(), SIGKILL);
}

#define WRAP(ret, name, params, args) \
    ret name params { \
        static ret (*real) params; \
        if (!real) real = dlsym(RTLD_NEXT, #name); \
        tick(fd); \
        return real args; \
    }
WRAP(ssize_t, pwrite, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o))
WRAP(ssize_t, pwrite64, (int fd, const void *b, size_t n, off_t o), (fd, b, n, o))
WRAP(ssize_t, pwritev, (int fd, const struct iovec *v, int c, off_t o), (fd, v, c, o))
WRAP(ssize_t, pwritev64, (int fd, const struct iovec *v, int c, off_t o), (fd, v, c, o))
WRAP(ssize_t, pwritev2, (int fd, const struct iovec *v, int c, off_t o, int f), (fd, v, c, o, f))
WRAP(int, fallocate, (int fd, int m, off_t o, off_t l), (fd, m, o, l))
WRAP(int, fallocate64, (int fd, int m, off_t o, off_t l), (fd, m, o, l))
WRAP(int, ftruncate, (int fd, off_t l), (fd, l))
WRAP(int, ftruncate64, (int fd, off_t l), (fd, l))
WRAP(ssize_t, write, (int fd, const void *b, size_t n), (fd, b, n))
EOF
cc -O2 -shared -fPIC -o "$root/shim.so" "$root/shim.c" -ldl

# cases NAME: builds the case in the current directory; prints the images
# to check, "|", and the verb's arguments (evaluated: '' is an empty one).
cases() {
    io() { local f=$1; shift; local a=(); for c in "$@"; do a+=(-c "$c"); done; qemu-io -f qcow2 "${a[@]}" "$f" >/dev/null; }
    q() { qemu-img create -q -f qcow2 "$@"; }
    keep() { # keep IMG [BACKING...]: o-prefixed untouched copies, chained alike
        local prev=""; for f in $(echo "$@" | tr ' ' '\n' | tac); do cp "$f" "o$f"
            [ -n "$prev" ] && qemu-img rebase -q -u -b "o$prev" -F qcow2 "o$f"; prev=$f; done; }
    snapshots() { q -o cluster_size=4k img 1G; local a=()
        for i in $(seq 0 99); do a+=("write -P $((i % 250 + 1)) $((i * 2097152 + 8192)) 16k"); done
        io img "${a[@]}"; qemu-img snapshot -c base img; io img 'write -P 7 0 64k'; keep img; }
    case $1 in
    snapshot-create) snapshots; echo "img|snapshot -c s2 img";;
    snapshot-apply) snapshots; cp img aimg; qemu-img snapshot -a base aimg; echo "img|snapshot -a base img";;
    snapshot-delete) snapshots; echo "img|snapshot -d base img";;
    rebase-new) q -o cluster_size=4k base 64M; io base 'write -P 1 0 48M'
        q -o cluster_size=4k -b base -F qcow2 img 64M; io img 'write -P 4 6M 3000'
        q new 64M; io new 'write -P 1 0 5M' 'write -P 5 40M 1M'; keep img base
        echo "img base new|rebase -b new -F qcow2 img";;
    rebase-flat) q base 8M; io base 'write -P 1 0 5M'; q -o cluster_size=4k -b base -F qcow2 img 8M
        io img 'write -P 4 1M 3000'; keep img base; echo "img base|rebase -b '' img";;
    commit) q base 64M; io base 'write -P 1 0 8M'; q -o cluster_size=4k -b base -F qcow2 img 64M
        io img 'write -P 3 4M 24M' 'write -z 40M 1M' 'discard 5M 64k' 'write -P 5 50M 8M'; keep img base
        echo "img base|commit img";;
    commit-b) q -o cluster_size=4k base 8M; io base 'write -P 1 0 8M'; q -b base -F qcow2 mid 32M
        io mid 'write -P 2 1M 8M'; q -b mid -F qcow2 img 64M; io img 'write -P 3 2M 30M'; keep img mid base
        echo "img mid base|commit -b base img";;
    amend-refcount64) q -o cluster_size=512 img 64M; io img 'write -P 1 0 8M' 'write -z 1M 1M'
        qemu-img snapshot -c s1 img; io img 'write -P 2 2M 1M'; keep img
        echo "img|amend -o refcount_bits=64 img";;
    amend-downgrade) q base 64M; io base 'write -P 7 0 32M'; q -o cluster_size=4k -b base -F qcow2 img 64M
        io img 'write -z 0 16M' 'write -P 1 20M 1M'; qemu-img snapshot -c s1 img; io img 'write -z 24M 4M'
        keep img base; echo "img|amend -o compat=0.10 img";;
    amend-upgrade) q -o cluster_size=4k,compat=0.10 img 64M; io img 'write -P 1 0 8M'
        qemu-img snapshot -c s1 img; io img 'write -P 2 2M 1M' 'write -P 3 30M 4M'; keep img
        echo "img|amend -o compat=1.1,refcount_bits=4 img";;
    resize-grow) q img 16M; io img 'write -P 1 0 4M' 'write -P 2 15M 1M'; keep img
        cp img aimg; qemu-img resize -q --preallocation=metadata aimg 2G
        echo "img|resize --preallocation=metadata img 2G";;
    resize-shrink) q -o cluster_size=512,refcount_bits=1 img 24M; io img 'write -P 1 0 3M' 'write -P 2 8M 12M'
        keep img; cp img aimg; qemu-img resize -q --shrink aimg 5M; echo "img|resize --shrink img 5M";;
    *) return 1;;
    esac
}
all="snapshot-create snapshot-apply snapshot-delete rebase-new rebase-flat commit commit-b amend-refcount64
     amend-downgrade amend-upgrade resize-grow resize-shrink"

# outcome: one line for the state in the current directory.
outcome() {
    local line="" alone status view=NEITHER
    for i in $images; do
        alone="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$i\"},\"backing\":null}"
        status=0; qemu-img check "$alone" > check.out 2>&1 || status=$?
        [ $status = 0 ] && continue
        line+="$i:check=$status"
        qemu-img info -U --output=json "$alone" 2>/dev/null | grep -q '"dirty-flag": true' && line+="(dirty)"
        line+=" $(grep -oE '^(ERROR|Leaked)( (OFLAG_COPIED|L[12]|data|cluster))*' check.out | sort -u | tr '\n' ';') "
    done
    if qemu-img compare -U oimg img >/dev/null 2>&1; then view=before
    elif [ -e aimg ] && qemu-img compare -U aimg img >/dev/null 2>&1; then view=after; fi
    echo "${line}view=$view"
}

for name in ${@:-$all}; do
    mkdir "$root/$name"
    spec=$(cd "$root/$name" && cases "$name") || { echo "unknown case $name" >&2; exit 64; }
    images=${spec%%|*}
    eval "arguments=(${spec#*|})"
    for tool in $tools; do
        run=$root/run
        rm -rf "$run"; cp -a "$root/$name" "$run"
        (cd "$run" && KILL_AT=0 KILL_COUNT_FILE=$root/count LD_PRELOAD=$root/shim.so "$tool" "${arguments[@]}" >/dev/null 2>&1)
        total=$(cat "$root/count")
        step=$(( (total + 249) / 250 ))
        echo "== $name: $(basename "$tool") ${arguments[*]}: $total calls (every ${step}th kill point, and the last three)"
        previous=""; first=1; last=1
        for n in $( (seq 1 "$step" "$total"; seq $((total > 2 ? total - 2 : 1)) $((total + 1))) | sort -nu); do
            rm -rf "$run"; cp -a "$root/$name" "$run"
            # The subshell waits for the tool, so its (silenced) stderr gets bash's "Killed".
            (cd "$run" && { KILL_AT=$n LD_PRELOAD=$root/shim.so "$tool" "${arguments[@]}" || true; }) >/dev/null 2>&1
            now=$(cd "$run" && outcome)
            if [ "$now" != "$previous" ]; then
                [ -n "$previous" ] && echo "  $first-$last: $previous"
                previous=$now; first=$n
            fi
            last=$n
        done
        echo "  $first-$last: $previous   ($((total + 1)) is the uncut run)"
    done
done
