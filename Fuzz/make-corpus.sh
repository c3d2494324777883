#!/usr/bin/env bash
# Regenerates the seed corpora in Fuzz/Corpus/ from qemu-img 7.2 (and the
# qcowkit binary for images of our own making). Seeds are tiny on purpose:
# 1 MiB disks or less, small clusters, a few written clusters each, so that the
# whole committed corpus stays at a few MB and the fuzzer mutates small files.
#
#   Fuzz/make-corpus.sh [path/to/qcowkit]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
qcowkit="${1:-$root/.build/debug/qcowkit}"
corpus="$root/Fuzz/Corpus"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

img() { qemu-img create -q -f qcow2 "$@"; }
io() { local f="$1"; shift; local args=(); for c in "$@"; do args+=(-c "$c"); done; qemu-io -f qcow2 "${args[@]}" "$f" >/dev/null; }
# A little of everything a reader meets: data, a zero cluster, a partial write.
fill() { io "$1" "write -P 0xa5 0 ${2:-4k}" "write -z ${3:-8k} ${2:-4k}" "write -P 0x3c ${4:-20k} 1k"; }

mkdir -p seeds && cd seeds
img -o cluster_size=512 c512.qcow2 64k && fill c512.qcow2 512 1k 3k
img -o cluster_size=4k c4k.qcow2 1M && fill c4k.qcow2
img -o cluster_size=4k,refcount_bits=1 rc1.qcow2 256k && fill rc1.qcow2
img -o cluster_size=4k,refcount_bits=2 rc2.qcow2 256k && io rc2.qcow2 "write -P 1 0 4k"
img -o cluster_size=4k,refcount_bits=8 rc8.qcow2 256k && io rc8.qcow2 "write -P 1 4k 4k"
img -o cluster_size=4k,refcount_bits=64 rc64.qcow2 256k && fill rc64.qcow2
img -o cluster_size=64k c64k.qcow2 1M
img -o cluster_size=4k,compat=0.10 v2.qcow2 256k && io v2.qcow2 "write -P 7 0 6k"
img -o cluster_size=4k,lazy_refcounts=on lazy.qcow2 256k && fill lazy.qcow2
img -o cluster_size=4k,preallocation=metadata prealloc.qcow2 24k
img -o cluster_size=16k,extended_l2=on l2ext.qcow2 1M && io l2ext.qcow2 "write -P 0x11 0 1k" "write -z 4k 2k" "write -P 0x22 20k 3k"

# Compressed clusters, zlib and zstd: write data, then convert with -c.
qemu-img create -q -f raw plain.raw 64k
qemu-io -f raw -c "write -P 0x41 0 16k" -c "write -P 0x42 24k 5k" plain.raw >/dev/null
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4k plain.raw zlib.qcow2
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4k,compression_type=zstd plain.raw zstd.qcow2
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=512 plain.raw zlib512.qcow2
rm plain.raw

# Internal snapshots.
img -o cluster_size=4k snap.qcow2 128k && io snap.qcow2 "write -P 1 0 4k"
qemu-img snapshot -c first snap.qcow2 && io snap.qcow2 "write -P 2 0 2k"
qemu-img snapshot -c second snap.qcow2

# Persistent bitmaps.
img -o cluster_size=4k bitmap.qcow2 128k
qemu-img bitmap --add bitmap.qcow2 b0 && qemu-img bitmap --add -g 64k bitmap.qcow2 b1 && qemu-img bitmap --disable bitmap.qcow2 b1

# Backing files: the top names "backing.qcow2" (what the open-read target
# calls the second file), as qcow2 and as raw, relative and with a format.
img -o cluster_size=4k backing.qcow2 256k && io backing.qcow2 "write -P 0x0b 0 12k"
img -o cluster_size=4k -b backing.qcow2 -F qcow2 top-q.qcow2 && io top-q.qcow2 "write -P 0x70 4k 4k"
qemu-img create -q -f raw rawbase.raw 64k && qemu-io -f raw -c "write -P 0x0c 0 8k" rawbase.raw >/dev/null
img -o cluster_size=512 -b backing.qcow2 -F raw top-r.qcow2 64k && io top-r.qcow2 "write -P 0x71 512 512"
# No backing format: qemu-img 7.2 insists on one, so its extension's type is
# overwritten with an unknown one (the first extension, at byte 112).
img -o cluster_size=4k -b backing.qcow2 -F qcow2 top-probe.qcow2 128k
[ "$(od -An -tx1 -j112 -N4 top-probe.qcow2 | tr -d ' ')" = e2792aca ]
printf 'XXXX' | dd of=top-probe.qcow2 bs=1 seek=112 conv=notrunc status=none

# Images of our own making.
if [ -x "$qcowkit" ]; then
    "$qcowkit" create -q -f qcow2 -o cluster_size=4k qk4k.qcow2 1M
    "$qcowkit" create -q -f qcow2 -o cluster_size=512,refcount_bits=4 qk512.qcow2 128k
    "$qcowkit" create -q -f qcow2 -o cluster_size=16k,extended_l2=on,compression_type=zstd qkext.qcow2 1M
else
    echo "warning: $qcowkit not found; skipping qcowkit-made seeds" >&2
fi
cd ..

# open-read: 1 option byte, 4 bytes of backing length, the top, the backing.
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
pack() { # pack OPTIONS TOP [BACKING]
    local backing_size=0
    [ -n "${3:-}" ] && backing_size=$(stat -c %s "$3")
    printf "\\x$(printf %02x "$1")"; be32 "$backing_size"; cat "$2"; [ -n "${3:-}" ] && cat "$3"; true
}
rm -rf "$corpus/open-read" "$corpus/header" && mkdir -p "$corpus/open-read" "$corpus/header" "$corpus/json"
i=0
for f in seeds/*.qcow2; do
    name=$(basename "$f" .qcow2)
    case "$name" in
        top-q) pack 0 "$f" seeds/backing.qcow2 ;;
        top-r) pack 0 "$f" seeds/rawbase.raw ;;
        top-probe) pack 1 "$f" seeds/backing.qcow2 ;;
        *) pack $(( (i * 11) & 31 )) "$f" ;;
    esac > "$corpus/open-read/$name"
    # header: the first 4 KiB, which hold the header, its extensions and the
    # backing name in every image qemu-img writes (the rest reads as zeroes).
    head -c 4096 "$f" > "$corpus/header/$name"
    i=$((i + 1))
done
# A loop: the top names itself as its backing.
img -o cluster_size=512 -u -b top.qcow2 -F qcow2 seeds/self.qcow2 64k
pack 0 seeds/self.qcow2 > "$corpus/open-read/self-loop"

# check and write: every seed image alone (1 option byte, or 2 seed bytes),
# and a few broken ones (see break_image below).
rm -rf "$corpus/check" "$corpus/write" && mkdir -p "$corpus/check" "$corpus/write"
# break_image FILE HOW: edits one field of a qcow2 v3 image with 16-bit
# refcounts in place, found through its header:
#   leak     the L1 table's cluster gets refcount 2 (a leak, nothing else)
#   copied   L1 entry 0 loses its COPIED flag (a fixable corruption)
#   refzero  the first data cluster gets refcount 0 (only a rebuild fixes it)
#   alias    L2 entry 0 points at refcount block 0, COPIED set (guest
#            writes there must be refused by the overlap check)
break_image() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
path, how = sys.argv[1], sys.argv[2]
f = open(path, 'r+b')
b = bytearray(f.read())
cluster_bits = struct.unpack_from('>I', b, 20)[0]
l1 = struct.unpack_from('>Q', b, 40)[0]
rt = struct.unpack_from('>Q', b, 48)[0]
block = struct.unpack_from('>Q', b, rt)[0]
l2 = struct.unpack_from('>Q', b, l1)[0] & 0x00fffffffffffe00
data = struct.unpack_from('>Q', b, l2)[0] & 0x00fffffffffffe00
def refcount(offset, value): struct.pack_into('>H', b, block + 2 * (offset >> cluster_bits), value)
if how == 'leak': refcount(l1, 2)
elif how == 'copied': struct.pack_into('>Q', b, l1, struct.unpack_from('>Q', b, l1)[0] & ~(1 << 63))
elif how == 'refzero': refcount(data, 0)
elif how == 'alias': struct.pack_into('>Q', b, l2, block | (1 << 63))
f.seek(0); f.write(b)
PY
}
img -o cluster_size=4k,lazy_refcounts=on seeds/dirty.qcow2 256k
# Killed mid-work: the dirty bit stays set and the refcounts lag behind.
(qemu-io -f qcow2 -c "write -P 0x5d 0 12k" -c "write -P 0x5e 64k 4k" -c abort seeds/dirty.qcow2 || true) >/dev/null 2>&1
for how in leak copied refzero alias; do
    img -o cluster_size=4k seeds/$how.qcow2 256k && io seeds/$how.qcow2 "write -P 0x33 0 8k" "write -P 0x34 128k 4k"
    break_image seeds/$how.qcow2 $how
done
i=0
for f in seeds/*.qcow2; do
    name=$(basename "$f" .qcow2)
    # (c64k: an empty 1 MiB disk, like others but larger.)
    case "$name" in self|c64k) continue ;; esac
    { printf "\\x$(printf %02x $((i & 1)))"; cat "$f"; } > "$corpus/check/$name"
    seed=$(( (i * 40503 + 1) & 65535 ))
    { printf "\\x$(printf %02x $((seed >> 8)))\\x$(printf %02x $((seed & 255)))"; cat "$f"; } > "$corpus/write/$name"
    i=$((i + 1))
done

# json: 1 byte choosing where the stream is cut, then QMP traffic.
j=0
json() { printf "\\x$(printf %02x $((j * 7 + 3)))"; printf '%s' "$1"; j=$((j + 1)); }
json '{"execute": "qmp_capabilities"}' > "$corpus/json/capabilities"
json '{"execute":"query-block","arguments":{"flat":true},"id":"a1"}' > "$corpus/json/query"
json "{ 'execute': 'blockdev-add', 'arguments': {'driver': 'qcow2', 'node-name': 'n0', 'file': {'driver': 'file', 'filename': '/tmp/x.qcow2'}} }" > "$corpus/json/single-quotes"
json '[1, -0, 0.5, -1.5e-7, 1E+2, 1e308, 1e999, -9223372036854775808, 18446744073709551615, 18446744073709551616]' > "$corpus/json/numbers"
json '"esc \" \\ \/ \b \f \n \r \t \u0041 \ud83d\ude00 \u00e9 é \u0000 '"$(printf '\xc0\x80')"'"' > "$corpus/json/strings"
json '{"a":1}{"b":[true,false,null]} 42 "x" {"c":{}}[]' > "$corpus/json/stream"
json '{"a":1,}'"$(printf '\xff')"'{"x": [[[[ ]]]] }' > "$corpus/json/resync"
json '{"event": "JOB_STATUS_CHANGE", "data": {"status": "running", "id": "j0"}, "timestamp": {"seconds": 1, "microseconds": 2}}' > "$corpus/json/event"

# qmp: 2 option bytes (bit 0 of the first negotiates first; the rest say where
# the text is cut), then what the client sends; names are the images the
# target puts in its directory, base.qcow2 and top.qcow2.
rm -rf "$corpus/qmp" && mkdir -p "$corpus/qmp"
q() { printf "\\x$(printf %02x $1)\\x$(printf %02x $2)"; printf '%s' "$3"; }
add_top='{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "file": {"driver": "file", "filename": "top.qcow2"}}}'
q 1 40 '{"execute": "query-commands", "id": 1}{"execute": "query-version"}' > "$corpus/qmp/queries"
q 0 9 '{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}{"exec-oob": "query-jobs", "id": "o"}{"execute": "query-jobs"}' > "$corpus/qmp/negotiate-oob"
q 1 77 '{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "top", "file": {"driver": "file", "filename": "top.qcow2"}}, "id": "a"}{"execute": "query-named-block-nodes", "arguments": {"flat": true}}{"execute": "blockdev-del", "arguments": {"node-name": "top"}}' > "$corpus/qmp/blockdev"
q 3 120 "$add_top"'{"execute": "block-commit", "arguments": {"job-id": "j0", "device": "top", "auto-finalize": false}}{"execute": "query-block-jobs"}{"execute": "job-pause", "arguments": {"id": "j0"}}{"execute": "job-resume", "arguments": {"id": "j0"}}{"execute": "block-job-set-speed", "arguments": {"device": "j0", "speed": 1024}}{"execute": "job-cancel", "arguments": {"id": "j0"}}{"execute": "query-jobs"}' > "$corpus/qmp/commit"
q 1 200 "$add_top"'{"execute": "block-stream", "arguments": {"job-id": "s0", "device": "top"}}{"execute": "job-dismiss", "arguments": {"id": "s0"}}{"execute": "query-jobs"}' > "$corpus/qmp/stream"
q 1 5 "{'execute': 'blockdev-add', 'arguments': {'driver': 'raw', 'node-name': 'r', 'file': {'driver': 'file', 'filename': 'base.qcow2', 'read-only': true}}}{'execute': 'query-named-block-nodes'} {\"execute\": 1}}{]" > "$corpus/qmp/raw-and-errors"
q 1 0 '{"execute": "query-jobs"}{"execute": "quit"}{"execute": "query-jobs"}' > "$corpus/qmp/quit"

du -sh "$corpus"
