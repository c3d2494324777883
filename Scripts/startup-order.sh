#!/usr/bin/env bash
# Writes Sources/qcowkit/qcowkit.order: the functions qcowkit's verbs run,
# in the order the release link lays them out first (lld's
# --symbol-ordering-file, Package.swift).
#
# Why: the kernel maps a binary's code in blocks around each page a process
# touches (64 KiB of fault-around, whole large folios where the page cache
# holds them), so code that runs scattered over the 11 MiB of qcowkit's
# text (the Swift runtime and standard library are linked in) counts several
# MiB in every process's resident memory. Laid out together it counts well
# under one. Run this after changes to what the verbs run at start-up, or
# when the benchmark's peak-memory table grows; stale names are harmless
# (the linker skips names it does not find).
#
#   Scripts/startup-order.sh          (needs valgrind: apt-get install valgrind)
#
# The functions come from callgrind runs of the release build (Swift runtime
# linked statically, as shipped). The order: first every function that
# info, check or map run (the millisecond verbs, whose memory is mostly
# code), most widely used first; then those of the other verbs' runs below.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "startup-order.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
swift build -c release --product qcowkit --static-swift-stdlib >/dev/null
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)/qcowkit
work=$(mktemp -d /var/tmp/qcowkit-order.XXXXXX)
trap 'rm -rf "$work"' EXIT
# valgrind 3.19 cannot read the DWARF 5 the Swift compiler writes.
strip --strip-debug -o "$work/qcowkit" "$bin"
qk=$work/qcowkit

# Inputs: a qcow2 image with data, zeroes and a snapshot over a backing file.
qemu-img create -q -f qcow2 "$work/base.qcow2" 64M
qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 8M 64k' "$work/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$work/base.qcow2" -F qcow2 "$work/top.qcow2"
qemu-io -c 'write -P 3 512k 1M' -c 'write -z 16M 1M' -c 'discard 20M 64k' "$work/top.qcow2" >/dev/null
qemu-img snapshot -c s1 "$work/top.qcow2"
head -c 4M /dev/urandom >"$work/src.raw"; truncate -s 16M "$work/src.raw"

profile() { # group name args...
    local group=$1 name=$2; shift 2
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$group.$name.cg" \
        "$qk" "$@" >/dev/null 2>"$work/$group.$name.err" </dev/null ||
        { echo "startup-order.sh: '$*' failed:" >&2; tail -5 "$work/$group.$name.err" >&2; exit 1; }
}
profile 1 info info "$work/top.qcow2"
profile 1 info-json info --output=json --backing-chain "$work/top.qcow2"
profile 1 check check "$work/top.qcow2"
profile 1 check-json check --output=json "$work/top.qcow2"
profile 1 map map "$work/top.qcow2"
profile 1 map-json map --output=json "$work/top.qcow2"
profile 2 create create -q -f qcow2 "$work/new.qcow2" 1G
profile 2 convert convert -O qcow2 "$work/top.qcow2" "$work/out.qcow2"
profile 2 convert-raw convert -O raw "$work/top.qcow2" "$work/out.raw"
profile 2 convert-c convert -c -O qcow2 "$work/src.raw" "$work/out-c.qcow2"
profile 2 compare compare "$work/top.qcow2" "$work/out.qcow2"
profile 2 measure measure -O qcow2 "$work/top.qcow2"
profile 2 snapshot snapshot -l "$work/top.qcow2"
profile 2 io io -c 'read 0 64k' -c 'write 128k 64k' "$work/new.qcow2"
profile 2 commit commit -q "$work/top.qcow2"

python3 - "$work" "$qk" Sources/qcowkit/qcowkit.order <<'PY'
import collections, glob, os, re, subprocess, sys
work, binary, out = sys.argv[1:]
defined = set()
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    fields = line.split()
    if len(fields) == 3 and fields[1] in "tTwW":
        defined.add(fields[2])
uses = {1: collections.Counter(), 2: collections.Counter()}
for path in glob.glob(os.path.join(work, "*.cg")):
    group = int(os.path.basename(path).split(".")[0])
    names = set()
    for line in open(path, errors="replace"):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
        if m:
            names.add(re.sub(r"'\d+$", "", m.group(1)))   # callgrind's recursion marks
    uses[group].update(name for name in names if name in defined)
first = sorted(uses[1], key=lambda name: (-uses[1][name], name))
rest = sorted((name for name in uses[2] if name not in uses[1]), key=lambda name: (-uses[2][name], name))
with open(out, "w") as f:
    f.write("\n".join(first + rest) + "\n")
print(f"{out}: {len(first)} functions of info/check/map, then {len(rest)} of the other verbs")
PY
# SwiftPM does not see the order file as an input of the link: remove the
# binary so that the next build links it with the new order.
rm -f "$bin"
