#!/usr/bin/env bash
# The acceptance scenario (spec/README.md, QEMU's iotest 191: block-commit
# where the top image has two parents), run end to end against a set of tools
# given on the environment, printing the filtered transcript on stdout.
#
# The same script drives QEMU 7.2 (the default) and QcowKit, so the fixture
# comparison in Tests/ConformanceTests is only as strong as this script is
# honest: it types the commands QEMU's test types, prints every line the
# tools print (stderr included), and fails instead of hanging when a reply
# does not come.
#
#   QEMU_IMG   create/info tool          default: qemu-img
#   QEMU_IO    io tool                   default: qemu-io
#   QEMU_PROG  the QMP service, before   default: qemu-system-x86_64 -M none
#              the common arguments
#              (-nodefaults -display none -qmp-pretty stdio, then --blockdev
#              or -drive options)
#   QEMU_COMM_TIMEOUT  seconds to wait for each line of a reply (default 10)
#   TEST_DIR   absolute scratch directory (default: a fresh one, removed after)
#
# Each tool variable is a shell word list, e.g.
#   QEMU_IMG="'/path with spaces/qcowkit'" QEMU_IO="/x/qcowkit io"
#   QEMU_PROG="/x/qcowkit serve" Scripts/iotest-191.sh
#
# Exit status: 0 when the scenario ran to the end (the output still has to be
# compared), 1 when a reply timed out or the service misbehaved (the reason is
# the last line of the transcript).
set -uo pipefail

eval "img_cmd=(${QEMU_IMG:-qemu-img})"
eval "io_cmd=(${QEMU_IO:-qemu-io})"
eval "prog_cmd=(${QEMU_PROG:-qemu-system-x86_64 -M none})"
comm_timeout=${QEMU_COMM_TIMEOUT:-10}
IMGFMT=qcow2

if [ -n "${TEST_DIR:-}" ]; then
    own_test_dir=
else
    TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/iotest-191.XXXXXX") || exit 1
    own_test_dir=y
fi
case $TEST_DIR in
    /*) ;;
    *) echo "TEST_DIR must be absolute: $TEST_DIR" >&2; exit 1 ;;
esac
TEST_IMG=$TEST_DIR/t.$IMGFMT

service_pid=
service_in=
service_out=

# The scenario runs in a pipeline's subshell, which has its own exit trap
# for the service it started.
kill_service() {
    if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
        kill -KILL "$service_pid" 2>/dev/null
        wait "$service_pid" 2>/dev/null
    fi
}

cleanup() {
    if [ -n "$own_test_dir" ]; then
        rm -rf "$TEST_DIR"
    else
        rm -f "$TEST_IMG" "$TEST_IMG".base "$TEST_IMG".mid "$TEST_IMG".ovl2 \
              "$TEST_IMG".ovl3 "$TEST_DIR"/qmp-in "$TEST_DIR"/qmp-out
    fi
}
trap cleanup EXIT

fail() {
    echo "$*"
    exit 1
}

# --- filters (spec/README.md, "Filters"); applied to everything printed ----

sed_escape() {
    printf '%s' "$1" | sed 's/[][\.*^$/#]/\\&/g'
}

# The monitor ends its lines with CR LF; like QEMU's own test filters, the
# transcript has plain LF.
filter_transcript() {
    local test_dir_re
    test_dir_re=$(sed_escape "$TEST_DIR")
    sed -u -E \
        -e 's/\r$//' \
        -e "s#$test_dir_re#TEST_DIR#g" \
        -e "s#$IMGFMT#IMGFMT#g" \
        -e 's/#block[0-9]{3,}/NODE_NAME/g' \
        -e 's/"actual-size": [0-9]+/"actual-size": SIZE/g' \
        -e 's/"(seconds|microseconds)": [0-9]+/"\1": TIMESTAMP/g' \
        -e 's#[0-9]+ ops; [0-9:.]+ sec \([^ ]+ [^ ]+/sec and [^ ]+ ops/sec\)#X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)#' \
        -e "/^Formatting '/{ s/ (cluster_size|extended_l2|compression_type|lazy_refcounts|refcount_bits|compat)=[^ ]*//g }"
}

# qemu-img info's human output without the lines that depend on the
# allocator's history or on format options: `disk size:` and the indented
# `Format specific information:` block.
filter_img_info() {
    local line skipping=
    while IFS= read -r line; do
        if [ "$line" = "Format specific information:" ]; then
            skipping=y
            continue
        fi
        if [ -n "$skipping" ]; then
            case $line in
                " "*|"	"*) continue ;;
            esac
            skipping=
        fi
        case $line in
            "disk size:"*) continue ;;
        esac
        printf '%s\n' "$line"
    done
}

# --- offline tools -----------------------------------------------------------

report_status() {
    local status=$1 what=$2
    [ "$status" -eq 0 ] || echo "($what exited with status $status)"
}

make_test_img() {
    # make_test_img FILE [BACKING]: 64M, or the backing file's size.
    local file=$1 backing=${2:-}
    if [ -n "$backing" ]; then
        "${img_cmd[@]}" create -f "$IMGFMT" -b "$backing" -F "$IMGFMT" "$file" 2>&1
    else
        "${img_cmd[@]}" create -f "$IMGFMT" "$file" 64M 2>&1
    fi
    report_status $? create
}

img_info() {
    "${img_cmd[@]}" info "$1" 2>&1 | filter_img_info
    report_status "${PIPESTATUS[0]}" info
}

qemu_io() {
    "${io_cmd[@]}" -f "$IMGFMT" -c "$1" "$2" 2>&1
    report_status $? io
}

# --- the QMP service ---------------------------------------------------------

# Reads lines from the service until one matches the extended regular
# expression $1, printing them unless $silent is set. Leading whitespace is
# kept, so '^}' matches only the end of a top-level object. Each line must
# arrive within the timeout: a reply that never comes fails the run.
wait_for() {
    local pattern=$1 line status unshown=()
    while true; do
        IFS= read -r -t "$comm_timeout" line <&"$service_out"
        status=$?
        [ "$status" -eq 0 ] || break
        if [ -n "${silent:-}" ]; then
            unshown+=("$line")
        else
            printf '%s\n' "$line"
        fi
        if [[ $line =~ $pattern ]]; then
            return 0
        fi
    done
    # What a silent wait swallowed explains the failure (a usage error, say).
    [ "${#unshown[@]}" -eq 0 ] || printf '%s\n' "${unshown[@]}"
    [ -z "$line" ] || printf '%s\n' "$line"
    if [ "$status" -gt 128 ]; then
        fail "Timeout waiting for $pattern"
    fi
    fail "The service closed its output while waiting for $pattern"
}

# send_cmd TEXT PATTERN: echoes TEXT (on one line, runs of white space
# collapsed, as QEMU's harness shows it), sends it as typed (several lines
# if it has several), then reads until PATTERN.
send_cmd() {
    local text=$1 pattern=$2
    local words=()
    read -r -d '' -a words <<<"$text"
    echo "${words[*]}"
    printf '%s\n' "$text" >&"$service_in" || fail "The service closed its input"
    wait_for "$pattern"
}

launch_service() {
    local fifo_in=$TEST_DIR/qmp-in fifo_out=$TEST_DIR/qmp-out
    rm -f "$fifo_in" "$fifo_out"
    mkfifo "$fifo_in" "$fifo_out" || fail "mkfifo failed"
    # The child opens its stdout before its stdin; so do we, so that neither
    # side blocks forever on a FIFO the other has not opened yet.
    "${prog_cmd[@]}" -nodefaults -display none -qmp-pretty stdio "$@" \
        >"$fifo_out" 2>&1 <"$fifo_in" &
    service_pid=$!
    exec {service_out}<"$fifo_out"
    exec {service_in}>"$fifo_in"
    # The greeting names the QEMU version: read it without printing it.
    silent=y wait_for capabilities
    silent=y wait_for '^}'
}

# After quit: print whatever the service still says, then require it to exit
# on its own, with status 0, within the timeout.
finish_service() {
    local line status waited=0
    exec {service_in}>&-
    while IFS= read -r -t "$comm_timeout" line <&"$service_out"; do
        printf '%s\n' "$line"
    done
    while kill -0 "$service_pid" 2>/dev/null; do
        [ "$waited" -lt "$((comm_timeout * 10))" ] || fail "Timeout waiting for the service to exit"
        sleep 0.1
        waited=$((waited + 1))
    done
    wait "$service_pid"
    status=$?
    service_pid=
    exec {service_out}<&-
    rm -f "$TEST_DIR"/qmp-in "$TEST_DIR"/qmp-out
    report_status "$status" "the service"
}

# --- the scenario (iotest 191) --------------------------------------------------

commit_and_check() {
    send_cmd "{ 'execute': 'qmp_capabilities' }" '^}'

    echo
    echo "=== Perform commit job ==="
    echo

    send_cmd "{ 'execute': 'block-commit',
       'arguments': { 'job-id': 'commit0',
                      'device': 'top',
                      'base':'$TEST_IMG.base',
                      'top': '$TEST_IMG.mid' } }" \
        '"status": "null"'
    send_cmd "" '^}'

    echo
    echo "=== Check that both top and top2 point to base now ==="
    echo

    send_cmd "{ 'execute': 'query-named-block-nodes' }" '^}'
    send_cmd "{ 'execute': 'quit' }" '^}'
    finish_service

    img_info "$TEST_IMG"
    img_info "$TEST_IMG.ovl2"
}

scenario() {
    trap kill_service EXIT
    echo "QA output created by 191"

    echo
    echo "=== Preparing and starting VM ==="
    echo

    make_test_img "$TEST_IMG.base"
    make_test_img "$TEST_IMG.mid" "$TEST_IMG.base"
    make_test_img "$TEST_IMG" "$TEST_IMG.mid"
    make_test_img "$TEST_IMG.ovl2" "$TEST_IMG.mid"

    qemu_io 'write -P 0x55 1M 64k' "$TEST_IMG.mid"

    launch_service \
        --blockdev "driver=$IMGFMT,file.driver=file,file.filename=$TEST_IMG.base,node-name=base" \
        --blockdev "driver=$IMGFMT,file.driver=file,file.filename=$TEST_IMG.mid,node-name=mid,backing=base" \
        --blockdev "driver=$IMGFMT,file.driver=file,file.filename=$TEST_IMG,node-name=top,backing=mid" \
        --blockdev "driver=$IMGFMT,file.driver=file,file.filename=$TEST_IMG.ovl2,node-name=top2,backing=mid"
    commit_and_check

    echo
    echo "=== Preparing and starting VM with -drive ==="
    echo

    make_test_img "$TEST_IMG.base"
    make_test_img "$TEST_IMG.mid" "$TEST_IMG.base"
    make_test_img "$TEST_IMG" "$TEST_IMG.mid"
    make_test_img "$TEST_IMG.ovl2" "$TEST_IMG.mid"
    make_test_img "$TEST_IMG.ovl3" "$TEST_IMG.ovl2"

    qemu_io 'write -P 0x55 1M 64k' "$TEST_IMG.mid"

    launch_service \
        -drive "driver=$IMGFMT,file=$TEST_IMG,node-name=top,backing.node-name=mid" \
        -drive "driver=$IMGFMT,file=$TEST_IMG.ovl3,node-name=top2,backing.backing=mid"
    commit_and_check

    echo "*** done"
}

scenario | filter_transcript
exit "${PIPESTATUS[0]}"
