#!/usr/bin/env bash
# Times qcowkit against QEMU's tools on the same work and prints, per case,
# the median time of each and ours/theirs (below 1.0: we are faster). Not a
# test: the figures go into closing notes.
#
#   Scripts/benchmark.sh [RUNS]        (default 3 runs per case; needs qemu-utils)
#   BENCH_DIR=/some/dir Scripts/benchmark.sh   (where the images go; default /var/tmp)
#   BENCH_TIMES=file Scripts/benchmark.sh      (also keep every timing: case, tool, ns)
#
# Fairness: both tools get the same inputs in the same directory; each run
# times them back to back, alternating which goes first; `sync` runs before
# every timed command, so that writeback and discards left over from the
# previous step are not charged to the next one, and the machine is left to
# settle after large files are deleted (ext4 may be discarding their blocks
# for seconds). Busy CPUs (other sessions' work) make each wake-up after an
# fdatasync wait for a time slice, which costs qcowkit io's single thread
# more than qemu-io's thread pool: read the figures with the load averages
# printed at the end. qcowkit is built as the
# Dockerfile ships it (release, Swift runtime linked statically). The
# commands that take milliseconds (info, map) count the median of a batch of
# calls per run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
batch=21
swift build -c release --product qcowkit --static-swift-stdlib >/dev/null
qk=$(swift build -c release --static-swift-stdlib --show-bin-path)/qcowkit
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/qcowkit-bench.XXXXXX")
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
# The same data as a qcow2 image: the source of convert -O raw, map and info.
qemu-img convert -f raw -O qcow2 "$work/src.raw" "$work/src.qcow2"

# Microseconds, read without forking (a `date` per timing would add a
# millisecond to the commands that take a few).
now() { now_us=${EPOCHREALTIME/./}; }
times_file=$work/times            # lines: case<TAB>tool<TAB>nanoseconds
cases=()
record() { # case tool ns
    [[ " ${cases[*]-} " == *" $1 "* ]] || cases+=("$1")
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$times_file"
}
time_one() { # case tool command... (stdout discarded)
    local name=$1 tool=$2 t0; shift 2
    sync
    now; t0=$now_us; "$@" >/dev/null; now
    record "$name" "$tool" $(((now_us - t0) * 1000))
}
time_batch() { # case tool command... (the median of $batch calls)
    local name=$1 tool=$2 i t0 samples=(); shift 2
    sync
    for ((i = 0; i < batch; i++)); do
        now; t0=$now_us; "$@" >/dev/null; now
        samples+=($((now_us - t0)))
    done
    record "$name" "$tool" $(($(printf '%s\n' "${samples[@]}" | sort -n | sed -n "$((batch / 2 + 1))p") * 1000))
}
# Runs `step qemu` and `step qcowkit`, the first one first on odd runs.
pair() { # run step-function
    if (($1 % 2)); then "$2" qemu; "$2" qcowkit; else "$2" qcowkit; "$2" qemu; fi
}

io_step() { # tool   (uses $io_name $io_cmds $io_size)
    local image=$work/$1.qcow2
    rm -f "$image"; qemu-img create -q -f qcow2 "$image" "$io_size"
    if [[ $1 == qemu ]]; then
        time_one "$io_name" qemu sh -c "qemu-io -f qcow2 '$image' < '$io_cmds'"
    else
        time_one "$io_name" qcowkit sh -c "'$qk' io -f qcow2 '$image' < '$io_cmds'"
    fi
}
io_case() { # run name cmdfile size
    io_name=$2 io_cmds=$3 io_size=$4
    pair "$1" io_step
    qemu-img compare -q "$work/qemu.qcow2" "$work/qcowkit.qcow2" || echo "warning: $2: results differ" >&2
    rm -f "$work/qemu.qcow2" "$work/qcowkit.qcow2"
}
# A convert writes some 512 MiB into the page cache, and how long that takes
# depends on the memory state the previous step left (on this kind of VM,
# pages not touched for a while cost far more than pages just freed). So each
# tool's timed convert follows an untimed one of its own, whose output is
# deleted, and each output is checksummed and deleted before the next step.
declare -A sums
convert_step() { # case tool output-format input output-suffix
    local name=$1 tool=$2 format=$3 input=$4 output=$work/$2.$5
    local command=(qemu-img); [[ $tool == qcowkit ]] && command=("$qk")
    rm -f "$output"
    "${command[@]}" convert -f "${input##*.}" -O "$format" "$input" "$output" >/dev/null
    rm -f "$output"
    time_one "$name" "$tool" "${command[@]}" convert -f "${input##*.}" -O "$format" "$input" "$output"
    sums[$name.$tool]=$(md5sum <"$output")
    rm -f "$output"
}
convert_qcow2_step() { convert_step "convert -O qcow2 (2 GiB raw with holes)" "$1" qcow2 "$work/src.raw" qcow2; }
convert_raw_step() { convert_step "convert -O raw (2 GiB qcow2)" "$1" raw "$work/src.qcow2" raw; }
same_output() { # case
    [[ ${sums[$1.qemu]} == "${sums[$1.qcowkit]}" ]] || echo "warning: $1: outputs differ" >&2
}
map_step() {
    local tool=(qemu-img); [[ $1 == qcowkit ]] && tool=("$qk")
    time_batch "map (2 GiB qcow2, per call)" "$1" "${tool[@]}" map --output=json "$work/src.qcow2"
}
info_step() {
    local tool=(qemu-img); [[ $1 == qcowkit ]] && tool=("$qk")
    time_batch "info (per call)" "$1" "${tool[@]}" info "$work/src.qcow2"
}

# A sparse file's checksum over its length and its data extents only (md5sum
# would read 64 GiB of holes).
data_sum() {
    python3 - "$1" <<'PY'
import hashlib, os, sys
h = hashlib.md5()
with open(sys.argv[1], "rb") as f:
    fd, end, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
    h.update(str(end).encode())
    while pos < end:
        try:
            pos = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        stop = os.lseek(fd, pos, os.SEEK_HOLE)
        h.update(str(pos).encode()); h.update(os.pread(fd, stop - pos, pos))
        pos = stop
print(h.hexdigest())
PY
}
# Creation runs through the write path (L1 growth, L2 allocation, linking),
# so metadata preallocation of a large image times that path; the outputs
# must be the same bytes.
create_step() {
    local tool=(qemu-img); [[ $1 == qcowkit ]] && tool=("$qk")
    local output=$work/$1.create.qcow2
    rm -f "$output"
    time_one "create -o preallocation=metadata (64 GiB)" "$1" \
        "${tool[@]}" create -q -f qcow2 -o preallocation=metadata "$output" 64G
    sums[create.$1]=$(data_sum "$output")
    rm -f "$output"
}

settle() { # lets writeback and the discards of deleted images finish before the next timing
    sync; sleep 3
}
settle
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$runs"); do
    pair "$r" convert_qcow2_step
    same_output "convert -O qcow2 (2 GiB raw with holes)"
    pair "$r" convert_raw_step
    same_output "convert -O raw (2 GiB qcow2)"
    pair "$r" map_step
    pair "$r" info_step
    pair "$r" create_step
    [[ ${sums[create.qemu]} == "${sums[create.qcowkit]}" ]] || echo "warning: create: outputs differ" >&2
    settle
    io_case "$r" "io: 1 GiB sequential 64 KiB writes" "$work/seq.cmds" 1G
    settle
    io_case "$r" "io: 100k random 4 KiB writes" "$work/rand.cmds" 4G
    settle
done

# What flushes cost (issue 16): the same allocating writes in qemu-io's
# default cache mode (writethrough: a flush after every write) and with
# `-t writeback` (flushes only where asked: none here but the one at exit),
# qcowkit io against qemu-io in the same mode. Self-contained: its own
# command scripts, images and cases.
flush_cost_cases() { # runs
    python3 - "$work" <<'PY'
import random, sys
work = sys.argv[1]
with open(f"{work}/fc-seq.cmds", "w") as f:
    for i in range(2048):                       # 128 MiB of sequential 64 KiB writes
        f.write(f"write -q -P 0x{(i % 255) + 1:02x} {i * 65536} 64k\n")
rng = random.Random(16)
with open(f"{work}/fc-rand.cmds", "w") as f:
    for _ in range(4000):                       # 4000 random 4 KiB writes in 1 GiB
        f.write(f"write -q -P 0x5a {rng.randrange(0, (1 << 30) // 4096) * 4096} 4k\n")
PY
    local r cache cmds name
    for r in $(seq "$1"); do
        for cache in writethrough writeback; do
            for cmds in seq rand; do
                [[ $cmds == seq ]] && name="io -t $cache: 128 MiB sequential 64 KiB writes" \
                    || name="io -t $cache: 4000 random 4 KiB writes"
                fc_name=$name fc_cmds=$work/fc-$cmds.cmds fc_cache=$cache
                pair "$r" flush_cost_step
                qemu-img compare -q "$work/fc-qemu.qcow2" "$work/fc-qcowkit.qcow2" || echo "warning: $name: results differ" >&2
                rm -f "$work/fc-qemu.qcow2" "$work/fc-qcowkit.qcow2"
                settle
            done
        done
    done
}
flush_cost_step() { # tool   (uses $fc_name $fc_cmds $fc_cache)
    local image=$work/fc-$1.qcow2
    rm -f "$image"; qemu-img create -q -f qcow2 "$image" 1G
    if [[ $1 == qemu ]]; then
        time_one "$fc_name" qemu sh -c "qemu-io -t $fc_cache -f qcow2 '$image' < '$fc_cmds'"
    else
        time_one "$fc_name" qcowkit sh -c "'$qk' io -t $fc_cache -f qcow2 '$image' < '$fc_cmds'"
    fi
}
flush_cost_cases "$runs"

[[ -n ${BENCH_TIMES:-} ]] && cp "$times_file" "$BENCH_TIMES"
# Medians per case and tool; the ratio is of the medians, and the per-run
# ratios' range shows how noisy the machine was.
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"
printf '%-42s %10s %10s %7s   %s\n' case "qemu (s)" "ours (s)" ratio "per-run ratios"
for name in "${cases[@]}"; do
    awk -F'\t' -v n="$name" '
        function median(a, k,   i, j, t) {
            for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
        }
        $1 == n && $2 == "qemu" { q[++nq] = $3; qs[nq] = $3 }
        $1 == n && $2 == "qcowkit" { k[++nk] = $3; ks[nk] = $3 }
        END {
            per = ""
            for (i = 1; i <= nq && i <= nk; i++) per = per sprintf("%s%.2f", i > 1 ? " " : "", ks[i] / qs[i])
            mq = median(q, nq); mk = median(k, nk)
            printf "%-42s %10.4f %10.4f %7.2f   %s\n", n, mq / 1e9, mk / 1e9, mk / mq, per
        }' "$times_file"
done
