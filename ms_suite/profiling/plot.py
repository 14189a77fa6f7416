"""Loss, eval-metric and throughput curves of one or more runs, from their ``metrics.jsonl``."""
from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence

from ms_suite.errors import UserError
from ms_suite.engine.callbacks import read_metrics


def default_metric(run_dir: str, evals: List[dict]) -> Optional[str]:
    """The run's monitored metric (summary.json's ``monitor``) if it was evaluated, else its first metric."""
    names = list(evals[-1]["eval"]) if evals else []
    summary = os.path.join(run_dir, "summary.json")
    if os.path.isfile(summary):
        with open(summary) as fh:
            monitor = json.load(fh).get("monitor")
        if monitor in names:
            return monitor
    return names[0] if names else None


def plot_runs(run_dirs: Sequence[str], output: str, metric: Optional[str] = None) -> str:
    """Draw the runs' curves side by side into ``output`` (PNG, PDF or SVG by extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(os.path.basename(os.path.normpath(d)), d, read_metrics(d)) for d in run_dirs]
    metric = metric or default_metric(runs[0][1], runs[0][2]["eval"])
    recorded = sorted({name for _, _, records in runs for r in records["eval"] for name in r["eval"]})
    if metric and metric not in recorded:
        raise UserError(f"--metric {metric}: the runs recorded {', '.join(recorded) or 'no evaluations'}")
    fig, (ax_loss, ax_metric, ax_speed) = plt.subplots(1, 3, figsize=(15, 4.2))
    for label, _, records in runs:
        train = records["train"]
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=label)
        timed = [r for r in train if "samples_per_s" in r]
        ax_speed.plot([r["step"] for r in timed], [r["samples_per_s"] for r in timed], label=label)
        evals = [r for r in records["eval"] if metric in r["eval"]]
        ax_metric.plot([r["step"] for r in evals], [r["eval"][metric] for r in evals], marker="o", label=label)
    _style(ax_loss, "training loss", "loss")
    _style(ax_metric, f"eval {metric}" if metric else "eval (none recorded)", metric or "")
    _style(ax_speed, "throughput (train)", "samples/s")
    speeds = [y for line in ax_speed.get_lines() for y in line.get_ydata() if y > 0]
    if speeds and max(speeds) > 20 * min(speeds):  # runs of very different models: keep each one readable
        ax_speed.set_yscale("log")
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    try:
        fig.savefig(output, dpi=110)
    except ValueError as err:  # unknown extension
        raise UserError(f"--output {output}: {err}") from None
    finally:
        plt.close(fig)
    return output


def _style(ax, title: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
