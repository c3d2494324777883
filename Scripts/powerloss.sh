#!/usr/bin/env bash
# The long run of the power-loss suite (Tests/Qcow2Tests/PowerLoss): more
# seeds per workload and more crash states per flush boundary than CI's
# sample, qemu-img checking more of them. Prints each workload's counts.
#
#   Scripts/powerloss.sh [SEEDS]          (default 8 seeds per workload)
#   POWERLOSS_SINGLES=N POWERLOSS_SUBSETS=N POWERLOSS_TORN=N POWERLOSS_BOUNDARIES=N POWERLOSS_QEMU_EVERY=N Scripts/powerloss.sh
#     (defaults here: every flush boundary, every single-operation state, 16 random subsets per
#     boundary, 8 with a torn write, qemu-img on every 10th state)
#   POWERLOSS_ONLY=TEXT Scripts/powerloss.sh   only the workloads whose name contains TEXT
#     (e.g. "amend", "bitmaps": the maintenance workloads, PowerLossMaintenance.swift;
#     "commit": qcowkit commit over two files, PowerLossCommit.swift; "NBD": writes through
#     an NBD export, PowerLossNBD.swift)
set -euo pipefail
cd "$(dirname "$0")/.."
export POWERLOSS_SEEDS=${1:-${POWERLOSS_SEEDS:-8}}
export POWERLOSS_SINGLES=${POWERLOSS_SINGLES:-100000}
export POWERLOSS_SUBSETS=${POWERLOSS_SUBSETS:-16}
export POWERLOSS_QEMU_EVERY=${POWERLOSS_QEMU_EVERY:-10}
export POWERLOSS_BOUNDARIES=${POWERLOSS_BOUNDARIES:-100000}
export POWERLOSS_TORN=${POWERLOSS_TORN:-8}
swift build --build-tests
swift test --skip-build --filter 'PowerLoss' 2>&1 | grep -vE '^\[|^◇|Testing Library|Target Platform'
