"""``metrics.jsonl``: the run's curves in a machine-readable file (what ``ms-suite plot`` reads).

One JSON object per line: ``{"step", "epoch", "loss", "lr", "samples_per_s", "data_ms",
"compute_ms"}`` every ``train.log_every_steps`` steps (averages over those steps) and
``{"step", "epoch", "eval": {...}}`` after each evaluation. A resumed run appends; readers keep
the last record of a step.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from ms_suite.engine.callbacks.base import TrainState
from ms_suite.errors import UserError
from ms_suite.engine.callbacks.recording import Recorder

METRICS_FILE = "metrics.jsonl"


class MetricsLog(Recorder):
    """Writes ``<run>/metrics.jsonl`` on the main rank."""

    def open_file(self, state: TrainState):
        context = state.context
        return open(os.path.join(context.run_dir.path, METRICS_FILE), "a") if context.dist.is_main else None

    def write_steps(self, state: TrainState, stats: Dict[str, float]) -> None:
        self._write(state, lr=state.lr, **stats)

    def write_eval(self, state: TrainState, metrics: Dict[str, float]) -> None:
        self._write(state, eval=metrics)

    def _write(self, state: TrainState, **fields: Any) -> None:
        epoch = state.epoch + state.step_in_epoch / state.steps_per_epoch
        record = {"step": state.step, "epoch": round(epoch, 4), **fields}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def read_metrics(run_dir: str) -> Dict[str, List[Dict[str, Any]]]:
    """A run's ``{"train": [...], "eval": [...]}`` records by step (the last record of a step wins)."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{run_dir}: no {METRICS_FILE} (not a run directory, or a run from before "
                        f"metrics.jsonl existed); pass run directories written by `ms-suite train`")
    train: Dict[int, dict] = {}
    evals: Dict[int, dict] = {}
    with open(path) as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # blank, or cut short by a crash
                continue
            (evals if "eval" in record else train)[record["step"]] = record
    return {"train": [train[k] for k in sorted(train)], "eval": [evals[k] for k in sorted(evals)]}
