#!/usr/bin/env bash
# Times qcowkit against QEMU's tools on the same work and prints, per case,
# the median time of each and ours/theirs (below 1.0: we are faster). Not a
# test: the figures go into closing notes.
#
#   Scripts/benchmark.sh [RUNS]        (default 3 runs per case; needs qemu-utils, libnbd-bin, fio)
#   BENCH_DIR=/some/dir Scripts/benchmark.sh   (where the images go; default /var/tmp)
#   BENCH_TIMES=file Scripts/benchmark.sh      (also keep every timing: case, tool, ns)
#   QCOWKIT=path Scripts/benchmark.sh          (time that binary instead of building one)
#   BENCH_CASES='regex' Scripts/benchmark.sh   (only the groups matching: convert, map,
#       info, check, create, io, compress, commit, bench, large, memory, nbd, flush; default all)
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
if [[ -n ${QCOWKIT:-} ]]; then
    qk=$QCOWKIT     # a qcowkit built already, as below
else
    swift build -c release --product qcowkit --static-swift-stdlib >/dev/null
    qk=$(swift build -c release --static-swift-stdlib --show-bin-path)/qcowkit
fi
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
# A 512 MiB raw source for compressed converts: a quarter random data, a
# quarter text, a quarter written zeroes, a quarter holes.
python3 - "$work/mixed.raw" <<'PY'
import os, random, sys
size = 512 << 20; q = size // 4; rng = random.Random(7)
with open(sys.argv[1], "wb") as f:
    f.truncate(size)
    f.write(rng.randbytes(q))
    lines, n, i = [], 0, 0
    while n < q:
        line = f"line {i}: the quick brown fox jumps over {i * 7919 % 1000} lazy dogs {rng.random()}\n".encode()
        lines.append(line); n += len(line); i += 1
    f.write(b"".join(lines)[:q])
    f.write(bytes(q))
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
# Floors: what writing the same data costs with no tool at all, timed in the
# "ours" column against qemu-img doing the whole job. A target ratio below a
# floor's cannot be met by any program that writes that data through the
# page cache (the floor reads nothing but /dev/zero, does no zero detection
# and no metadata). convert -O qcow2 writes the source's 512 MiB of data into
# a new file; commit writes 1 GiB into base and flushes it, half over base's
# data and half appended (as commit of the top's [512 MiB, 1.5 GiB) over
# base's [0, 1 GiB) does), then cuts the emptied top to its first clusters.
write_floor() { # file bytes offset [fdatasync]
    dd if=/dev/zero of="$1" bs=2M count=$(($2 >> 21)) seek="$3" oflag=seek_bytes \
        conv=notrunc${4:+,fdatasync} status=none
}
commit_floor() { # base top
    local size; size=$(stat -c %s "$1")
    write_floor "$1" $((1 << 30)) $(((size - (512 << 20)) >> 21 << 21)) fdatasync
    truncate -s 256K "$2"
}
convert_floor_step() {
    local name="floor: write 512 MiB, vs qemu convert -O qcow2"
    if [[ $1 == qemu ]]; then
        rm -f "$work/floor.qcow2"
        time_one "$name" qemu qemu-img convert -f raw -O qcow2 "$work/src.raw" "$work/floor.qcow2"
        rm -f "$work/floor.qcow2"
    else
        rm -f "$work/floor.raw"
        time_one "$name" qcowkit write_floor "$work/floor.raw" $((512 << 20)) 0
        rm -f "$work/floor.raw"
    fi
}
commit_floor_step() {
    local name="floor: write 1 GiB, fdatasync, cut top, vs qemu commit"
    if [[ $1 == qemu ]]; then
        commit_step qemu "$name"
        rm -f "$work"/qemu.{base,top}.qcow2
    else
        cp --sparse=always "$work/commit-base.qcow2" "$work/floor.base.qcow2"
        cp --sparse=always "$work/commit-top.qcow2" "$work/floor.top.qcow2"
        time_one "$name" qcowkit commit_floor "$work/floor.base.qcow2" "$work/floor.top.qcow2"
        rm -f "$work"/floor.{base,top}.qcow2
    fi
}
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
check_step() {
    local tool=(qemu-img); [[ $1 == qcowkit ]] && tool=("$qk")
    time_batch "check (2 GiB qcow2, per call)" "$1" "${tool[@]}" check "$work/src.qcow2"
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

# Compressed converts: qcowkit's output must be qemu-img's default (in-order)
# output byte for byte; the -W rows time qemu-img with out-of-order writes
# (its fastest, with output that depends on thread timing) against the same
# in-order qcowkit run.
declare -A compressed_sum
compress_step() { # tool   (uses $compress_type $compress_qemu_flags $compress_name)
    local output=$work/$1.compressed.qcow2 command=(qemu-img convert $compress_qemu_flags)
    [[ $1 == qcowkit ]] && command=("$qk" convert)
    rm -f "$output"
    time_one "$compress_name" "$1" "${command[@]}" -c -f raw -O qcow2 -o compression_type=$compress_type \
        "$work/mixed.raw" "$output"
    compressed_sum[$1]=$(md5sum <"$output")
    rm -f "$output"
}
compress_case() { # run type qemu-flags
    compress_type=$2 compress_qemu_flags=$3
    compress_name="convert -c $2 (512 MiB mixed)${3:+ vs qemu $3}"
    pair "$1" compress_step
    if [[ -z $3 && ${compressed_sum[qemu]} != "${compressed_sum[qcowkit]}" ]]; then
        echo "warning: $compress_name: not byte-identical to qemu-img's" >&2
    fi
}
# Commit of 1 GiB of an overlay into its 2 GiB base, flushes included; each
# tool gets fresh copies (untimed), and the bases must then read the same.
commit_step() { # tool [case name]
    local tool=(qemu-img); [[ $1 == qcowkit ]] && tool=("$qk")
    cp --sparse=always "$work/commit-base.qcow2" "$work/$1.base.qcow2"
    cp --sparse=always "$work/commit-top.qcow2" "$work/$1.top.qcow2"
    qemu-img rebase -u -b "$work/$1.base.qcow2" -F qcow2 "$work/$1.top.qcow2"
    time_one "${2:-commit 1 GiB into 2 GiB base}" "$1" "${tool[@]}" commit -q "$work/$1.top.qcow2"
}
commit_case() { # run
    pair "$1" commit_step
    qemu-img compare -q "$work/qemu.base.qcow2" "$work/qcowkit.base.qcow2" || echo "warning: commit: bases differ" >&2
    qemu-img check -q "$work/qcowkit.base.qcow2" || echo "warning: commit: base not clean" >&2
    rm -f "$work"/{qemu,qcowkit}.{base,top}.qcow2
}
# bench: 4 KiB reads at queue depth 64 (the time for the same requests, so
# the ratio is the inverse of the IOPS ratio). With -t none the reference is
# fio (libaio, O_DIRECT) on the same raw file instead of qemu-img.
bench_step() { # tool   (uses $bench_cache)
    if [[ $1 == qemu && $bench_cache == none ]]; then
        time_one "bench qd64 4k reads -t none vs fio" qemu fio --name=r --filename="$work/bench.raw" --rw=randread \
            --bs=4k --iodepth=64 --ioengine=libaio --direct=1 --number_ios=$bench_count --size=1G --norandommap \
            --randrepeat=1 --output=/dev/null
    elif [[ $1 == qemu ]]; then
        time_one "bench qd64 4k reads -t $bench_cache" qemu qemu-img bench -q -f raw -c $bench_count -d 64 \
            -t $bench_cache "$work/bench.raw"
    else
        local name="bench qd64 4k reads -t $bench_cache"; [[ $bench_cache == none ]] && name+=" vs fio"
        time_one "$name" qcowkit "$qk" bench -q -f raw -c $bench_count -d 64 -t $bench_cache "$work/bench.raw"
    fi
}
bench_case() { # run cache
    bench_cache=$2 bench_count=200000
    pair "$1" bench_step
}
# The 1 TiB image with metadata preallocation (16 M clusters): check, map
# and info.
large_step() {
    local tool=(qemu-img); [[ $1 == qcowkit ]] && tool=("$qk")
    time_one "check (1 TiB, metadata prealloc)" "$1" "${tool[@]}" check "$work/large.qcow2"
    time_one "map (1 TiB, metadata prealloc)" "$1" "${tool[@]}" map --output=json "$work/large.qcow2"
    time_batch "info (1 TiB, metadata prealloc, per call)" "$1" "${tool[@]}" info "$work/large.qcow2"
}
# Peak memory (max RSS, KiB) of each tool on the same work: the median of
# three runs, each after `$mem_prep` (a fresh copy of what the verb changes).
mem_file=$work/memory
peak_memory() { # case tool command...
    local name=$1 tool=$2 i samples=(); shift 2
    for i in 1 2 3; do
        eval "${mem_prep:-true}"
        /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>&1 || true
        samples+=("$(tail -1 "$work/rss")")
    done
    printf '%s\t%s\t%s\n' "$name" "$tool" "$(printf '%s\n' "${samples[@]}" | sort -n | sed -n 2p)" >>"$mem_file"
}
memory_rows() {
    local t cmd m=$work/mem
    qemu-img create -q -f qcow2 "$m.base.qcow2" 256M
    qemu-io -c 'write -P 1 0 8M' "$m.base.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -b "$m.base.qcow2" -F qcow2 "$m.top.qcow2"
    qemu-io -c 'write -P 2 4M 8M' "$m.top.qcow2" >/dev/null
    for t in qemu qcowkit; do
        cmd=(qemu-img); [[ $t == qcowkit ]] && cmd=("$qk")
        mem_prep=
        peak_memory "info" $t "${cmd[@]}" info "$work/src.qcow2"
        peak_memory "check" $t "${cmd[@]}" check "$work/src.qcow2"
        peak_memory "map" $t "${cmd[@]}" map --output=json "$work/src.qcow2"
        peak_memory "compare" $t "${cmd[@]}" compare "$m.top.qcow2" "$m.base.qcow2"
        peak_memory "measure" $t "${cmd[@]}" measure -O qcow2 "$m.top.qcow2"
        peak_memory "bench (20000 reads)" $t "${cmd[@]}" bench -c 20000 "$m.top.qcow2"
        peak_memory "snapshot -l" $t "${cmd[@]}" snapshot -l "$m.top.qcow2"
        mem_prep="rm -f '$m.new'"
        peak_memory "create" $t "${cmd[@]}" create -q -f qcow2 "$m.new" 1G
        peak_memory "dd" $t "${cmd[@]}" dd if="$m.top.qcow2" of="$m.new" bs=1M count=8
        peak_memory "convert -O qcow2 (2 GiB raw)" $t "${cmd[@]}" convert -f raw -O qcow2 "$work/src.raw" "$m.new"
        peak_memory "convert -O raw (2 GiB qcow2)" $t "${cmd[@]}" convert -f qcow2 -O raw "$work/src.qcow2" "$m.new"
        peak_memory "convert -c zlib (512 MiB)" $t "${cmd[@]}" convert -c -f raw -O qcow2 "$work/mixed.raw" "$m.new"
        peak_memory "convert -c zstd (512 MiB)" $t "${cmd[@]}" convert -c -f raw -O qcow2 -o compression_type=zstd \
            "$work/mixed.raw" "$m.new"
        mem_prep="cp '$m.top.qcow2' '$m.new'"
        peak_memory "snapshot -c" $t "${cmd[@]}" snapshot -c s1 "$m.new"
        peak_memory "resize" $t "${cmd[@]}" resize "$m.new" 1G
        peak_memory "amend -o refcount_bits=64" $t "${cmd[@]}" amend -o refcount_bits=64 "$m.new"
        peak_memory "bitmap --add" $t "${cmd[@]}" bitmap --add "$m.new" b0
        mem_prep="cp '$m.base.qcow2' '$m.b2'; cp '$m.top.qcow2' '$m.new'; qemu-img rebase -u -b '$m.b2' -F qcow2 '$m.new'"
        peak_memory "commit" $t "${cmd[@]}" commit -q "$m.new"
        peak_memory "rebase -b ''" $t "${cmd[@]}" rebase -b '' "$m.new"
        mem_prep=
        if [[ -e $work/large.qcow2 ]]; then
            peak_memory "check (1 TiB)" $t "${cmd[@]}" check "$work/large.qcow2"
            peak_memory "map (1 TiB)" $t "${cmd[@]}" map --output=json "$work/large.qcow2"
            peak_memory "info (1 TiB)" $t "${cmd[@]}" info "$work/large.qcow2"
        fi
    done
    rm -f "$m".*
}
wants() { [[ $1 =~ ${BENCH_CASES:-.} ]]; }
# NBD: each tool serves the 2 GiB qcow2 read-only (-e 8: nbdcopy and fio
# may open several connections), then nbdcopy copies it out (to null: and
# to a file) and fio reads 4 KiB blocks at random, 64 in flight.
nbd_serve() { # tool socket   (sets nbd_pid)
    local command=(qemu-nbd); [[ $1 == qcowkit ]] && command=("$qk" nbd)
    "${command[@]}" -t -r -e 8 -f qcow2 -k "$2" "$work/src.qcow2" & nbd_pid=$!
    until nbdinfo --size "nbd+unix:///?socket=$2" >/dev/null 2>&1; do sleep 0.05; done
}
nbd_step() {
    local socket=$work/$1.sock output=$work/$1.nbdcopy.raw
    nbd_serve "$1" "$socket"
    time_one "nbdcopy to null: (2 GiB qcow2)" "$1" nbdcopy "nbd+unix:///?socket=$socket" null:
    rm -f "$output"
    time_one "nbdcopy to a file (2 GiB qcow2)" "$1" nbdcopy "nbd+unix:///?socket=$socket" "$output"
    sums[nbdcopy.$1]=$(data_sum "$output")
    rm -f "$output"
    time_one "fio 4k randread qd64 over NBD (100 MiB)" "$1" fio --name=randread --ioengine=nbd \
        --uri="nbd+unix:///?socket=$socket" --rw=randread --bs=4k --iodepth=64 --io_size=100M --size=2G \
        --output-format=terse
    kill "$nbd_pid"; wait "$nbd_pid" || true
}

settle() { # lets writeback and the discards of deleted images finish before the next timing
    sync; sleep 3
}
if wants commit; then
    # A 2 GiB base with data every other 64 MiB, and an overlay with 1 GiB written.
    qemu-img create -q -f qcow2 "$work/commit-base.qcow2" 2G
    qemu-io -c "write -P 0x11 0 1G" "$work/commit-base.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -b "$work/commit-base.qcow2" -F qcow2 "$work/commit-top.qcow2"
    qemu-io -c "write -P 0x22 512M 1G" "$work/commit-top.qcow2" >/dev/null
fi
if wants bench; then truncate -s 1G "$work/bench.raw"; dd if=/dev/urandom of="$work/bench.raw" bs=1M count=1024 conv=notrunc status=none; fi
if wants large; then qemu-img create -q -f qcow2 -o preallocation=metadata "$work/large.qcow2" 1T; fi
settle
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$runs"); do
    if wants convert; then
        pair "$r" convert_qcow2_step
        same_output "convert -O qcow2 (2 GiB raw with holes)"
        pair "$r" convert_raw_step
        same_output "convert -O raw (2 GiB qcow2)"
        pair "$r" convert_floor_step
    fi
    wants map && pair "$r" map_step
    wants info && pair "$r" info_step
    wants check && pair "$r" check_step
    if wants create; then
        pair "$r" create_step
        [[ ${sums[create.qemu]} == "${sums[create.qcowkit]}" ]] || echo "warning: create: outputs differ" >&2
    fi
    if wants io; then
        settle
        io_case "$r" "io: 1 GiB sequential 64 KiB writes" "$work/seq.cmds" 1G
        settle
        io_case "$r" "io: 100k random 4 KiB writes" "$work/rand.cmds" 4G
    fi
    if wants compress; then
        settle
        compress_case "$r" zlib ""
        compress_case "$r" zlib -W
        compress_case "$r" zstd ""
        compress_case "$r" zstd -W
    fi
    if wants commit; then settle; commit_case "$r"; settle; pair "$r" commit_floor_step; fi
    if wants bench; then bench_case "$r" writeback; bench_case "$r" none; fi
    if wants large; then pair "$r" large_step; fi
    if wants nbd; then
        settle
        pair "$r" nbd_step
        [[ ${sums[nbdcopy.qemu]} == "${sums[nbdcopy.qcowkit]}" ]] || echo "warning: nbdcopy: outputs differ" >&2
    fi
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
wants flush && flush_cost_cases "$runs"

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
if wants memory; then
    memory_rows
    printf '\n%-42s %10s %10s %7s\n' "peak memory (max RSS)" "qemu (KiB)" "ours (KiB)" ratio
    awk -F'\t' '$2 == "qemu" { q[$1] = $3; order[++n] = $1 } $2 == "qcowkit" { k[$1] = $3 }
        END { for (i = 1; i <= n; i++) printf "%-42s %10d %10d %7.2f\n", order[i], q[order[i]], k[order[i]], k[order[i]] / q[order[i]] }' "$mem_file"
fi
