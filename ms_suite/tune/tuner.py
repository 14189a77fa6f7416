"""``Tuner``: open (or resume) a study over a recipe, run trials until the budget, write the results."""
from __future__ import annotations

import dataclasses
import math
import os
import shlex
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import optuna

from ms_suite.config import load_config
from ms_suite.engine.rundir import RunDir, default_output_dir
from ms_suite.errors import UserError
from ms_suite.tune import report
from ms_suite.tune.space import grid_choices, parse_search_space
from ms_suite.tune.study import (Objective, TrialFailed, build_pruner, build_sampler,
                                 check_same_study, count_finished, default_storage, open_storage,
                                 recover_interrupted, redact)


class Tuner:
    """Search ``recipe``'s ``search_space``; trials are run directories under ``output_dir``.

    ``study`` names the study to create, resume or join (default ``<recipe>-<timestamp>``);
    ``storage`` is an SQLAlchemy URL (default: SQLite ``<output_dir>/study.db``); ``trials``
    overrides ``tune.trials``, the number of trials the study should finish.
    """

    def __init__(self, recipe: str, overrides: Sequence[str] = (), study: Optional[str] = None,
                 output_dir: Optional[str] = None, storage: Optional[str] = None, trials: Optional[int] = None,
                 echo: Callable[[str], None] = report.echo_line):
        cfg = load_config(recipe, overrides)
        self.recipe, self.overrides, self.echo = recipe, list(overrides), echo
        self.params = parse_search_space(cfg, recipe, overrides)
        self.tune = cfg.tune if trials is None else dataclasses.replace(cfg.tune, trials=trials)
        if self.tune.sampler == "grid":
            grid_choices(self.params, recipe)  # every entry must list its choices
        if self.tune.pruner != "none" and cfg.eval.every_epochs == 0:
            raise UserError(f"tune.pruner {self.tune.pruner} needs per-epoch evaluation, but eval.every_epochs "
                            f"is 0; set eval.every_epochs: 1 (or tune.pruner: none)")
        self.name = study or os.path.basename(default_output_dir(recipe))
        self.folder = os.path.abspath(output_dir or os.path.join("runs", "tune", self.name))
        self.storage_url = storage or default_storage(self.folder)
        self.resume_hint = shlex.join(["ms-suite", "tune", "-c", recipe, "--study", self.name]
                                      + (["--storage", redact(storage)] if storage else [])
                                      + (["--output-dir", output_dir] if output_dir else [])
                                      + (["--set", *overrides] if overrides else []))

    @property
    def target(self) -> int:
        """Trials to finish; a grid never needs more than its size."""
        if self.tune.sampler == "grid":
            return min(self.tune.trials, math.prod(len(p.distribution.choices) for p in self.params))
        return self.tune.trials

    def open_study(self) -> Tuple[optuna.Study, List[int]]:
        """Create, resume or join the study; returns it and the numbers of the interrupted trials
        it queued again."""
        os.makedirs(self.folder, exist_ok=True)
        storage = open_storage(self.storage_url)
        study = optuna.create_study(storage=storage, study_name=self.name, direction=self.tune.direction,
                                    load_if_exists=True)
        check_same_study(study, self.params, self.tune, self.recipe)
        recovered = recover_interrupted(study, storage)
        study.sampler = build_sampler(self.tune, self.params, self.recipe,
                                      trials_so_far=len(study.get_trials(deepcopy=False)))
        study.pruner = build_pruner(self.tune)
        return study, recovered

    def run(self) -> Dict[str, Any]:
        """Run trials until the study has ``target`` finished ones; returns the summary."""
        study, recovered = self.open_study()
        trials = study.get_trials(deepcopy=False)
        remaining = self.target - count_finished(trials)
        self._announce(trials, recovered, remaining)
        table = report.LiveTable(self.tune.metric, [p.key for p in self.params], self.echo)
        table.header()
        for trial in trials:
            if trial.state.is_finished():
                table.finished(trial)
        objective = Objective(self.recipe, self.overrides, self.params, self.tune, self.folder,
                              on_start=table.started)

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            table.finished(trial)
            if count_finished(study.get_trials(deepcopy=False)) >= self.target:
                study.stop()  # other workers may have finished trials too

        try:
            if remaining > 0:
                study.optimize(objective, n_trials=remaining, catch=(TrialFailed,), callbacks=[after_trial],
                               gc_after_trial=True)
        except KeyboardInterrupt:
            self.echo(f"interrupted; resume with: {self.resume_hint}")
            self.write_results(study)
            raise
        return self.write_results(study)

    def _announce(self, trials: Sequence[optuna.trial.FrozenTrial], recovered: List[int], remaining: int) -> None:
        done = count_finished(trials)
        state = f"resumed with {done} finished trial(s)" if trials else "new"
        self.echo(f"study {self.name} ({state}), storage {redact(self.storage_url)}")
        if recovered:
            self.echo(f"trial(s) {', '.join(map(str, recovered))} were interrupted; queued again")
        self.echo(f"sampler {self.tune.sampler}, pruner {self.tune.pruner}, {self.tune.direction} "
                  f"{self.tune.metric}; running up to {max(remaining, 0)} more of {self.target} trials "
                  f"(resume with: {self.resume_hint})")

    def write_results(self, study: optuna.Study) -> Dict[str, Any]:
        """best.yaml, summary.json and study.png in the study folder; returns the summary."""
        records = [report.trial_record(t) for t in study.get_trials(deepcopy=False)]
        best = report.best_trial(study)
        files = {"summary": os.path.join(self.folder, "summary.json"), "plot": os.path.join(self.folder, "study.png")}
        if best is not None:
            files["best_config"] = os.path.join(self.folder, "best.yaml")
            report.write_best_config(files["best_config"], self.recipe, self.overrides, best, self.tune.metric,
                                     self.name)
        importances, note = report.param_importances(study)
        title = (f"study {self.name}: best {self.tune.metric} {best.value:.4g} (trial {best.number})"
                 if best else f"study {self.name}: no completed trial yet")
        report.plot_study(records, importances, note, self.tune.metric, self.tune.direction, title, files["plot"])
        summary = {
            "study": self.name, "storage": redact(self.storage_url), "recipe": self.recipe,
            "overrides": self.overrides, "metric": self.tune.metric, "direction": self.tune.direction,
            "sampler": self.tune.sampler, "pruner": self.tune.pruner, "target_trials": self.target,
            "counts": {s: sum(r["state"] == s for r in records) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
            "best": None if best is None else {"trial": best.number, "value": best.value, "params": best.params,
                                               "run_dir": best.user_attrs.get("run_dir")},
            "importances": importances, "importances_note": note,
            "search_space": {p.key: repr(p.distribution) for p in self.params},
            "trials": records, "files": files,
        }
        RunDir(self.folder).write_summary(summary)
        return summary
