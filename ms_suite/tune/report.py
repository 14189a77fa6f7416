"""What a study leaves behind: the live trial table, best.yaml, summary.json and study.png."""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from ms_suite.config import save_config
from ms_suite.engine.callbacks import format_duration
from ms_suite.tune.study import point_config, trial_reason

FIXED_COLUMNS = ("trial", "state", "{metric}", "epochs", "time")


def trial_record(trial: FrozenTrial) -> Dict[str, Any]:
    """A JSON-ready row: pruned trials show their last reported value."""
    value = trial.value if trial.state == TrialState.COMPLETE else None
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    return {"number": trial.number, "state": trial.state.name, "value": value, "params": trial.params,
            "epochs": trial.user_attrs.get("epochs"),
            "duration_s": round(trial.duration.total_seconds(), 1) if trial.duration else None,
            "reason": trial_reason(trial), "run_dir": trial.user_attrs.get("run_dir"),
            "intermediate": {int(step): v for step, v in sorted(trial.intermediate_values.items())
                             if math.isfinite(v)}}


def echo_line(line: str) -> None:
    """Print and flush, so the live table shows up at once when stdout is a file or a pipe."""
    print(line, flush=True)


def table_headers(metric: str, keys: Sequence[str]) -> List[str]:
    return [c.format(metric=metric) for c in FIXED_COLUMNS] + list(keys) + ["reason"]


def record_cells(record: Dict[str, Any], keys: Sequence[str]) -> List[str]:
    duration = record["duration_s"]
    return ([str(record["number"]), record["state"], _fmt(record["value"]), _fmt(record["epochs"]),
             format_duration(duration) if duration is not None else ""]
            + [_fmt(record["params"].get(key)) for key in keys] + [record["reason"]])


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LiveTable:
    """One line when a trial starts and one when it ends, in fixed-width columns."""

    def __init__(self, metric: str, keys: Sequence[str], echo: Callable[[str], None] = echo_line):
        self.keys, self.echo = list(keys), echo
        self.headers = table_headers(metric, keys)
        # wide enough for "COMPLETE", "0:01:23" and values like "0.0123": rows stay aligned as they come
        self.widths = [len(h) if i == 0 else max(len(h), 8) for i, h in enumerate(self.headers[:-1])]

    def _line(self, cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells, self.widths)] + list(cells[len(self.widths):])
        return "  ".join(padded).rstrip()

    def header(self) -> None:
        self.echo(self._line(self.headers))
        self.echo(self._line(["-" * w for w in self.widths] + ["-" * len(self.headers[-1])]))

    def started(self, number: int, values: Dict[str, Any]) -> None:
        self.echo(self._line([str(number), "RUNNING", "", "", ""] + [_fmt(values.get(k)) for k in self.keys] + [""]))

    def finished(self, trial: FrozenTrial) -> None:
        self.echo(self._line(record_cells(trial_record(trial), self.keys)))


# ---------------------------------------------------------------- end-of-study files

def best_trial(study: optuna.Study) -> Optional[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if complete else None


def param_importances(study: optuna.Study) -> Tuple[Dict[str, float], str]:
    """Optuna's importances (PED-ANOVA) and a note when they are not meaningful yet."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}, "needs 2 or more completed trials"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importances = optuna.importance.get_param_importances(study)
    note = next((str(w.message).split(".")[0] for w in caught if issubclass(w.category, UserWarning)), "")
    if len(importances) == 1:
        note = "a single parameter has importance 1"
    return {k: round(v, 4) for k, v in importances.items()}, note


def write_best_config(path: str, recipe: str, overrides: Sequence[str], trial: FrozenTrial, metric: str,
                      study_name: str) -> None:
    """The best trial as a self-contained recipe: ``ms-suite train -c best.yaml`` reproduces it."""
    cfg = point_config(recipe, overrides, trial.params)
    note = f"tuned: best of study {study_name} (trial {trial.number}, {metric} {trial.value:.4g})"
    cfg.description = f"{cfg.description} | {note}" if cfg.description else note
    save_config(cfg, path)


def plot_study(records: Sequence[Dict[str, Any]], importances: Dict[str, float], note: str, metric: str,
               direction: str, title: str, path: str) -> None:
    """Optimisation history, per-epoch learning curves (pruned ones dashed) and parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, (history, curves, bars) = plt.subplots(1, 3, figsize=(16, 4.5))
    _plot_history(history, records, metric, direction)
    _plot_curves(curves, records, metric, direction)
    _plot_importances(bars, importances, note)
    for ax in (history, curves):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_history(ax, records, metric: str, direction: str) -> None:
    done = [r for r in records if r["state"] == "COMPLETE"]
    pruned = [r for r in records if r["state"] == "PRUNED" and r["value"] is not None]
    failed = sum(r["state"] == "FAIL" for r in records)
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], color="C0", label="complete", zorder=3)
    ax.scatter([r["number"] for r in pruned], [r["value"] for r in pruned], color="grey", marker="x",
               label="pruned (last value)", zorder=3)
    pick = max if direction == "maximize" else min
    best, steps = None, []
    for r in done:
        best = r["value"] if best is None else pick(best, r["value"])
        steps.append((r["number"], best))
    if steps:
        ax.step(*zip(*steps), where="post", color="C1", label="best so far")
    ax.set(title=f"Optimisation history ({failed} failed not shown)" if failed else "Optimisation history",
           xlabel="trial", ylabel=metric)
    ax.legend(fontsize=8)


def _plot_curves(ax, records, metric: str, direction: str) -> None:
    done = [r for r in records if r["state"] == "COMPLETE"]
    pick = max if direction == "maximize" else min
    best = pick(done, key=lambda r: r["value"])["number"] if done else None
    for r in records:
        if not r["intermediate"]:
            continue
        epochs, values = zip(*sorted(r["intermediate"].items()))
        style = {"COMPLETE": dict(color="C0", alpha=0.6), "PRUNED": dict(color="grey", linestyle="--", alpha=0.8)}
        kwargs = dict(color="C1", linewidth=2.5, label=f"best (trial {best})") if r["number"] == best else \
            style.get(r["state"], dict(color="red", alpha=0.5))
        ax.plot(epochs, values, marker="o", markersize=3, **kwargs)
    ax.set(title="Per-epoch eval (dashed: pruned)", xlabel="epoch", ylabel=metric)
    if best is not None:
        ax.legend(fontsize=8)


def _plot_importances(ax, importances: Dict[str, float], note: str) -> None:
    ax.set_title("Parameter importances (PED-ANOVA)")
    if importances:
        keys = list(importances)[::-1]
        ax.barh(keys, [importances[k] for k in keys], color="C2", height=0.5)
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance")
    if note:
        ax.text(0.5, 0.02 if importances else 0.5, note, ha="center", transform=ax.transAxes, fontsize=8,
                wrap=True)
