#!/usr/bin/env bash
# Builds and runs QcowKit's libFuzzer targets (the nested package in Fuzz/).
#
#   Scripts/fuzz.sh TARGET SECONDS          fuzz TARGET for SECONDS on its corpus
#   Scripts/fuzz.sh TARGET --reproduce FILE run one input (a crash file) once
#   Scripts/fuzz.sh TARGET --minimize FILE  shrink a crashing input to FILE.min
#   Scripts/fuzz.sh --ci                    every target briefly (~1 min in all);
#                                           fails if any of them crashes
#   Scripts/fuzz.sh --list                  the targets
#
# TARGET is a file name in Fuzz/Targets/ without .swift (header, open-read,
# json, ...). The seeds in Fuzz/Corpus/TARGET are only read; what the fuzzer
# finds goes to Fuzz/.build/corpus/TARGET (kept between runs) and crashes to
# Fuzz/.build/artifacts/TARGET/. A crash found becomes a regression test in
# Tests/Qcow2Tests/FuzzRegressions*.swift; see Fuzz/README.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/Fuzz"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

targets() { for f in "$fuzz"/Targets/*.swift; do basename "$f" .swift; done; }

# The sanitizers are passed twice on purpose: `--sanitize=fuzzer` tells SwiftPM
# not to rename the executables' `main` (libFuzzer's must run), and
# `-Xswiftc -sanitize=fuzzer,address` instruments every module with both; with
# SwiftPM's separate --sanitize flags the last one alone would take effect.
# `-enable-testing` lets the qmp target reach the service's internal session
# API (as the QMP tests do), and every target the codec's `package` API
# (headers, tables, refcounts) through `@testable import Qcow2`.
#
# The manifest lists Targets/ when it is evaluated. SwiftPM would cache that
# evaluation by the manifest's text alone, so it is made afresh every time
# (a second or so); the build plan made from it is kept until the set of
# targets changes.
build() {
    local stamp="$fuzz/.build/targets.list"
    if [ "$(targets)" != "$(cat "$stamp" 2>/dev/null)" ]; then
        rm -f "$fuzz/.build/release.yaml" "$fuzz/.build/release/description.json"
    fi
    swift build --package-path "$fuzz" -c release --manifest-cache none \
        --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing \
        2> >(grep -v "ld.gold: warning: Cannot export local symbol" >&2) >&2
    bin="$(swift build --package-path "$fuzz" -c release --manifest-cache none --show-bin-path)"
    targets > "$stamp"
}

# Per-target options: the longest input, the dictionary.
options() {
    local target="$1"
    case "$target" in
        json) echo "-max_len=4096 -dict=$fuzz/json.dict" ;;
        qmp) echo "-max_len=4096 -dict=$fuzz/qmp.dict" ;;
        nbd) echo "-max_len=4096 -dict=$fuzz/nbd.dict" ;;
        header) echo "-max_len=8192 -dict=$fuzz/qcow2.dict" ;;
        *) echo "-max_len=262144 -dict=$fuzz/qcow2.dict" ;;
    esac
}

# Seconds per target under --ci: about a minute in all. The targets that
# open images get more than the cheap decoders (json, header), which cover
# their inputs in seconds; a target not named here gets 8.
ci_seconds() {
    case "$1" in
        json|header) echo 5 ;;
        open-read|check|write) echo 13 ;;
        qmp|nbd) echo 10 ;;
        *) echo 8 ;;
    esac
}

# What every run shares: crashes are traps and ASan reports, hangs are >10 s
# per input, and no single allocation may exceed 256 MiB (the library's own
# bounds are 64 MiB at most: snapshot table, bitmap directory).
common=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1)
# The Swift runtime's backtracer would take over crashes from libFuzzer.
export SWIFT_BACKTRACE=enable=no

# Removes scratch directories that killed fuzzer processes left on tmpfs.
clean_scratch() {
    local dir pid
    for dir in /dev/shm/qcowkit-fuzz-* /tmp/qcowkit-fuzz-*; do
        [ -d "$dir" ] || continue
        pid="${dir##*/qcowkit-fuzz-}"; pid="${pid%%-*}"
        kill -0 "$pid" 2>/dev/null || rm -rf "$dir"
    done
}

run_target() { # run_target TARGET SECONDS CORPUS_DIR
    local target="$1" seconds="$2" corpus="$3"
    mkdir -p "$corpus" "$fuzz/.build/artifacts/$target"
    # shellcheck disable=SC2046
    "$bin/fuzz-$target" "${common[@]}" $(options "$target") -max_total_time="$seconds" \
        -artifact_prefix="$fuzz/.build/artifacts/$target/" "$corpus" "$fuzz/Corpus/$target"
}

check_target() {
    [ -f "$fuzz/Targets/$1.swift" ] || { echo "unknown fuzz target '$1'; targets: $(targets | tr '\n' ' ')" >&2; exit 2; }
}

[ $# -ge 1 ] || usage
case "$1" in
    --list) targets; exit 0 ;;
    --ci)
        build
        clean_scratch
        names=($(targets))
        failed=0
        for target in "${names[@]}"; do
            seconds=$(ci_seconds "$target")
            echo "== fuzz $target for ${seconds}s" >&2
            scratch="$(mktemp -d)"
            if ! run_target "$target" "$seconds" "$scratch" 2>"$scratch.log"; then
                failed=$((failed + 1))
                tail -n 60 "$scratch.log" >&2
                echo "== fuzz $target: CRASH (input saved in Fuzz/.build/artifacts/$target/)" >&2
            else
                grep -E "DONE|stat::number_of_executed_units" "$scratch.log" >&2 || true
            fi
            rm -rf "$scratch" "$scratch.log"
        done
        clean_scratch
        # The plain closing line CI reads: one per target, crashed or not.
        echo "fuzz: $(( ${#names[@]} - failed )) passed, $failed failed"
        exit $(( failed == 0 ? 0 : 1 )) ;;
    -h|--help) usage ;;
esac

target="$1"; shift
check_target "$target"
[ $# -ge 1 ] || usage
case "$1" in
    --reproduce)
        [ $# -eq 2 ] || usage
        # Absolute: a target may change directory (qmp works in its scratch directory).
        file="$(realpath "$2")"
        build
        "$bin/fuzz-$target" "${common[@]}" $(options "$target") "$file" ;;
    --minimize)
        [ $# -eq 2 ] || usage
        file="$(realpath "$2")"
        build
        "$bin/fuzz-$target" "${common[@]}" $(options "$target") -minimize_crash=1 -max_total_time=120 \
            -exact_artifact_path="$file.min" "$file"
        echo "minimized input: $2.min" >&2 ;;
    *)
        [[ "$1" =~ ^[0-9]+$ ]] || usage
        build
        clean_scratch
        run_target "$target" "$1" "$fuzz/.build/corpus/$target"
        clean_scratch ;;
esac
