#!/usr/bin/env bash
# Times qcowkit against QEMU's tools on the same work, interleaved run by run,
# and prints ours/theirs ratios (below 1.0: we are faster). Not a test: the
# figures go into closing notes.
#
#   Scripts/benchmark.sh [RUNS]        (default 3 runs per case; needs qemu-utils)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
swift build -c release --product qcowkit >/dev/null
qk=$PWD/.build/release/qcowkit
work=$(mktemp -d /var/tmp/qcowkit-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Command scripts fed on stdin, the same for both tools.
python3 - "$work" <<'PY'
import random, sys
work = sys.argv[1]
with open(f"{work}/seq.cmds", "w") as f:
    for i in range(16384):                      # 1 GiB of sequential 64 KiB writes
        f.write(f"write -q -P 0x{(i % 255) + 1:02x} {i * 65536} 64k\n")
rng = random.Random(1234)
with open(f"{work}/rand.cmds", "w") as f:
    for _ in range(100_000):                    # 100k random 4 KiB writes in 4 GiB
        f.write(f"write -q -P 0x5a {rng.randrange(0, (4 << 30) // 4096) * 4096} 4k\n")
PY
# A 2 GiB raw source with holes: 64 MiB of data every 256 MiB, plus scattered 4k blocks.
truncate -s 2G "$work/src.raw"
for i in 0 1 2 3 4 5 6 7; do
    dd if=/dev/urandom of="$work/src.raw" bs=1M count=64 seek=$((i * 256)) conv=notrunc status=none
    dd if=/dev/urandom of="$work/src.raw" bs=4k count=1 seek=$((i * 65536 + 40000)) conv=notrunc status=none
done

now() { date +%s%N; }
declare -A total
time_one() { # name tool command...
    local name=$1 tool=$2; shift 2
    local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now)
    total[$name.$tool]=$(( ${total[$name.$tool]:-0} + t1 - t0 ))
}

io_case() { # name cmdfile size
    local name=$1 cmds=$2 size=$3
    qemu-img create -q -f qcow2 "$work/q.qcow2" "$size"; cp "$work/q.qcow2" "$work/k.qcow2"
    time_one "$name" qemu sh -c "qemu-io -f qcow2 '$work/q.qcow2' < '$cmds'"
    time_one "$name" qcowkit sh -c "'$qk' io -f qcow2 '$work/k.qcow2' < '$cmds'"
    qemu-img compare -q "$work/q.qcow2" "$work/k.qcow2" || echo "warning: $name results differ" >&2
}

for r in $(seq "$runs"); do
    io_case "io: 1 GiB sequential 64 KiB writes" "$work/seq.cmds" 1G
    io_case "io: 100k random 4 KiB writes" "$work/rand.cmds" 4G
    rm -f "$work"/*.qcow2
    time_one "convert -O qcow2 (2 GiB raw with holes)" qemu qemu-img convert -f raw -O qcow2 "$work/src.raw" "$work/q.qcow2"
    time_one "convert -O qcow2 (2 GiB raw with holes)" qcowkit "$qk" convert -f raw -O qcow2 "$work/src.raw" "$work/k.qcow2"
    time_one "convert -O raw (2 GiB qcow2)" qemu qemu-img convert -f qcow2 -O raw "$work/q.qcow2" "$work/q.raw"
    time_one "convert -O raw (2 GiB qcow2)" qcowkit "$qk" convert -f qcow2 -O raw "$work/q.qcow2" "$work/k.raw"
    time_one "map (2 GiB qcow2)" qemu qemu-img map --output=json "$work/q.qcow2"
    time_one "map (2 GiB qcow2)" qcowkit "$qk" map --output=json "$work/q.qcow2"
    time_one "info" qemu qemu-img info "$work/q.qcow2"
    time_one "info" qcowkit "$qk" info "$work/q.qcow2"
    rm -f "$work"/*.raw.out "$work/q.raw" "$work/k.raw"
done

printf '%-42s %10s %10s %7s\n' case "qemu (s)" "ours (s)" ratio
for key in "${!total[@]}"; do [[ $key == *.qemu ]] && echo "${key%.qemu}"; done | sort | while read -r name; do
    q=${total[$name.qemu]}; k=${total[$name.qcowkit]}
    awk -v n="$name" -v q="$q" -v k="$k" -v r="$runs" \
        'BEGIN { printf "%-42s %10.3f %10.3f %7.2f\n", n, q / r / 1e9, k / r / 1e9, k / q }'
done
