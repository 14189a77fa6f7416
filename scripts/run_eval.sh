#!/usr/bin/env bash
# Evaluate a checkpoint on the recipe's eval split, on one device.
#   bash scripts/run_eval.sh -c CONFIG --checkpoint PATH [--device Ascend|GPU|CPU] [--device-id N]
#        [--set k=v ...] [--print-cmd]
# Run with --help for every flag.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
launch eval "$@"
