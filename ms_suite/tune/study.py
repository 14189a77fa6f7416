"""Run an Optuna study over a recipe: every trial is an ordinary training run in the study folder.

The study lives in an RDB storage (SQLite file by default, or a PostgreSQL/MySQL URL shared by
several machines). A heartbeat marks each running trial as alive; when a worker dies, its trial
is failed with the reason and queued again with the same parameters, so a killed study resumes
losing only the time of the trials that were running.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ms_suite.config import Config, load_config
from ms_suite.config.schema import TuneConfig
from ms_suite.engine.callbacks import Callback, TrainState
from ms_suite.engine.trainer import Trainer
from ms_suite.errors import UserError
from ms_suite.runtime.memory import release_compiled_graphs
from ms_suite.tune.space import Param, grid_choices, to_overrides

log = logging.getLogger("ms_suite")

HEARTBEAT_S = 30   # a running trial's worker writes a heartbeat this often ...
GRACE_S = 120      # ... and is presumed dead after this long without one
INTERRUPTED = "interrupted"



class TrialFailed(Exception):
    """A trial's training raised; the study records the reason and goes on."""


class MetricMissing(UserError):
    """``tune.metric`` is not produced by the task's evaluation: every trial would fail, so stop."""


# ---------------------------------------------------------------- trial outcomes

def trial_reason(trial: FrozenTrial) -> str:
    """Why a trial was pruned or failed ('' for others)."""
    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get("reason", f"{INTERRUPTED}: its worker stopped sending heartbeats")
    return trial.user_attrs.get("reason", "") if trial.state == TrialState.PRUNED else ""


def is_interrupted(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and trial_reason(trial).startswith(INTERRUPTED)


def count_finished(trials: Sequence[FrozenTrial]) -> int:
    """Trials that ran to an outcome (complete, pruned, or failed in training); these use up --trials."""
    return sum(t.state.is_finished() and not is_interrupted(t) for t in trials)


def point_config(recipe: str, overrides: Sequence[str], values: Dict[str, Any]) -> Config:
    """The plain recipe of one point of the space (no search_space/tune left: it trains as is)."""
    cfg = load_config(recipe, [*overrides, *to_overrides(values)])
    return dataclasses.replace(cfg, search_space={}, tune=TuneConfig())


# ---------------------------------------------------------------- storage and study

def default_storage(folder: str) -> str:
    return f"sqlite:///{os.path.join(os.path.abspath(folder), 'study.db')}"


def redact(url: str) -> str:
    """The storage URL without its password, for logs and summaries."""
    import sqlalchemy

    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def open_storage(url: str) -> RDBStorage:
    """An RDB storage with heartbeats; a dead worker's trial is queued again once."""
    import sqlalchemy.exc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
        except ImportError as err:
            raise UserError(f"--storage {redact(url)}: database driver missing ({err}); install it, e.g. "
                            f"pip install 'psycopg[binary]' for postgresql+psycopg:// or pymysql for "
                            f"mysql+pymysql://") from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise UserError(f"--storage {redact(url)}: cannot open the study database ({first})") from None


def build_sampler(tune: TuneConfig, params: Sequence[Param], recipe: str,
                  trials_so_far: int) -> optuna.samplers.BaseSampler:
    """The seeded sampler. A resumed TPE/random study offsets the seed by its trial count so it draws
    new points; the grid keeps tune.seed, which fixes its (shuffled) order for every worker."""
    if tune.sampler == "grid":
        return optuna.samplers.GridSampler(grid_choices(params, recipe), seed=tune.seed)
    seed = tune.seed + trials_so_far
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tune.startup_trials)


def build_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    """Pruners see one report per evaluated epoch (step = epochs done)."""
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=tune.min_epochs)
    if tune.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=tune.min_epochs,
                                                      reduction_factor=tune.reduction_factor)
    return optuna.pruners.NopPruner()


def _space_signature(params: Sequence[Param]) -> Dict[str, str]:
    return {p.key: optuna.distributions.distribution_to_json(p.distribution) for p in params}


def check_same_study(study: optuna.Study, params: Sequence[Param], tune: TuneConfig, recipe: str) -> None:
    """A resumed or shared study must keep its search space, metric and direction."""
    ours = {"search_space": _space_signature(params), "metric": tune.metric}
    if not study.user_attrs:
        for key, value in {**ours, "recipe": recipe}.items():
            study.set_user_attr(key, value)
    theirs = {"search_space": study.user_attrs.get("search_space"), "metric": study.user_attrs.get("metric")}
    differs = [key for key in ours if ours[key] != theirs[key]]
    if study.direction.name.lower() != tune.direction:
        differs.append("direction")
    if differs:
        raise UserError(f"study {study.study_name!r} was created from {study.user_attrs.get('recipe')} with a "
                        f"different {' and '.join(differs)}; resume it with that recipe, or start a new "
                        f"study (another --study name)")


def recover_interrupted(study: optuna.Study, storage: RDBStorage) -> List[int]:
    """Fail (with the reason) and re-queue running trials whose worker is gone; returns their numbers.

    A worker on this machine is gone when its process is; one elsewhere when it has missed
    heartbeats for GRACE_S (Optuna's check, also run before every trial).
    """
    running = study.get_trials(states=(TrialState.RUNNING,))
    host = socket.gethostname()
    for trial in running:
        worker = trial.user_attrs.get("worker", {})
        if worker.get("host") != host or _process_alive(worker.get("pid")):
            continue
        reason = f"{INTERRUPTED}: its process ({host} pid {worker['pid']}) stopped mid-trial; queued again"
        try:
            storage.set_trial_user_attr(trial._trial_id, "reason", reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            continue
        storage.get_heartbeat_stale_trial_callback()(study, trial)  # queue the same parameters again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    now = study.get_trials(deepcopy=False)
    return [t.number for t in running if is_interrupted(now[t.number])]


def _process_alive(pid: Optional[int]) -> bool:
    if pid is None or pid == os.getpid():  # our pid on a RUNNING trial is a reused one: we run none yet
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- one trial

class ReportToTrial(Callback):
    """Report the monitored metric after each evaluated epoch; stop training when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric
        self.reported: Optional[Dict[str, float]] = None
        self.pruned_at: Optional[int] = None

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.metrics or state.metrics is self.reported:  # no new evaluation this epoch
            return
        self.reported = state.metrics
        self.trial.report(metric_value(state.metrics, self.metric), step=state.epoch)
        if self.trial.should_prune():
            self.pruned_at = state.epoch
            state.stop = True


def metric_value(metrics: Dict[str, float], metric: str) -> float:
    if metric not in metrics:
        known = ", ".join(k for k in metrics if k != "samples")
        raise MetricMissing(f"tune.metric `{metric}` is not an eval metric of this task ({known}); "
                            f"set tune.metric to one of them")
    return metrics[metric]


class Objective:
    """Train one sampled point in ``folder/trial_NNNN`` and return its final eval metric."""

    def __init__(self, recipe: str, overrides: Sequence[str], params: Sequence[Param], tune: TuneConfig,
                 folder: str,
                 on_start: Callable[[int, Dict[str, Any]], None] = lambda number, values: None):
        self.recipe, self.overrides, self.params, self.tune = recipe, list(overrides), params, tune
        self.folder, self.on_start = folder, on_start

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        values = {p.key: p.suggest(trial) for p in self.params}
        run_dir = os.path.join(self.folder, f"trial_{trial.number:04d}")
        trial.set_user_attr("run_dir", run_dir)
        self.on_start(trial.number, values)
        try:
            return self._train(trial, values, run_dir)
        except optuna.TrialPruned:
            raise
        except MetricMissing as err:  # a recipe error, not this trial's: ends the study
            trial.set_user_attr("reason", str(err))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("reason", f"{INTERRUPTED}: stopped with Ctrl-C")
            raise
        except Exception as err:
            trial.set_user_attr("reason", describe_error(err))
            log.debug("trial %d failed", trial.number, exc_info=True)
            raise TrialFailed(describe_error(err)) from err

    def _train(self, trial: optuna.Trial, values: Dict[str, Any], run_dir: str) -> float:
        cfg = point_config(self.recipe, self.overrides, values)
        reporter = ReportToTrial(trial, self.tune.metric)
        try:
            with _trial_logging():
                summary = Trainer(cfg, run_dir, callbacks=[reporter]).fit()
        finally:
            release_compiled_graphs()  # MindSpore keeps every trained model's graphs and memory: free them
        trial.set_user_attr("epochs", summary["epochs"])
        value = metric_value(summary["metrics"], self.tune.metric)
        if reporter.pruned_at is not None:
            reason = f"pruned after epoch {reporter.pruned_at} ({self.tune.metric} {value:.4g})"
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
        return value


def describe_error(err: BaseException) -> str:
    """One line: the message of a UserError (its subclasses named), else the exception type and message."""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return first if type(err) is UserError else f"{type(err).__name__}: {first}"


@contextlib.contextmanager
def _trial_logging() -> Iterator[None]:
    """During a trial the console shows only warnings (the live table is the display)."""
    console = [h for h in log.handlers if type(h) is logging.StreamHandler]
    levels = [h.level for h in console]
    for handler in console:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        yield
    finally:
        for handler, level in zip(console, levels):
            handler.setLevel(level)
