#!/usr/bin/env bash
# Train a recipe on one device.
#   bash scripts/run_standalone_train.sh -c CONFIG [--device Ascend|GPU|CPU] [--device-id N]
#        [--output-dir DIR] [--resume auto|CKPT] [--set k=v ...] [--print-cmd]
# Run with --help for every flag.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
launch standalone "$@"
