#!/usr/bin/env bash
# Data-parallel training: msrun on Ascend, GPU and CPU, or one process per NPU with an Ascend rank table.
#   bash scripts/run_distribute_train.sh -c CONFIG -n 8 [--device Ascend|GPU|CPU] [--rank-table hccl_8p.json]
#        [--nodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 8118] [--bind-core]
#        [--output-dir DIR] [--resume auto|CKPT] [--max-restarts N] [--hang-timeout S] [--set k=v ...] [--print-cmd]
# Per-rank logs go to <output-dir>/logs/worker_<rank>.log; when a rank fails (or hangs for S seconds),
# every rank is stopped and the script exits non-zero naming that rank, or, with --max-restarts N,
# relaunches the job from the newest checkpoint up to N times (<output-dir>/restarts.jsonl).
# Run with --help for every flag.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
launch distribute "$@"
