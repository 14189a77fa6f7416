"""ms-suite tune: strict search-space validation, failure bookkeeping, and one small real study that
is killed mid-trial, resumed, prunes its poor trial and writes a best config that trains."""
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from conftest import ROOT, cli
from ms_suite.config import load_config
from ms_suite.errors import UserError
from ms_suite.tune import parse_search_space, to_overrides
from ms_suite.tune import study as study_mod
from ms_suite.tune.space import grid_choices
from ms_suite.tune.study import Objective, ReportToTrial, TrialFailed, check_same_study, describe_error

# One pytest-xdist worker builds the killed and resumed study, once.
pytestmark = pytest.mark.xdist_group("tune")

QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")
GOOD_LR, BAD_LR = 0.05, 1e-5
# A grid over two learning rates. With tune.seed 1 Optuna's shuffled grid runs 0.05 first (asserted
# below), so the median pruner (after 1 finished trial, from epoch 1) must stop the 1e-5 trial.
STUDY_RECIPE = f"""
base: [{QUICKSTART}]
model: {{kwargs: {{base_width: 8}}}}
train: {{epochs: 2, batch_size: 64}}
eval: {{batch_size: 128}}
search_space:
  train.lr: {{type: categorical, choices: [{GOOD_LR}, 1.0e-5]}}
tune: {{sampler: grid, seed: 1, pruner: median, startup_trials: 1, min_epochs: 1}}
"""


def write_recipe(folder, search_space, tune=None, name="recipe.yaml"):
    raw = {"base": [QUICKSTART], "search_space": search_space, "tune": tune or {}}
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


# ---------------------------------------------------------------- search space validation

@pytest.mark.parametrize("entry, fragment", [
    ({"train.lrr": {"type": "float", "low": 0.1, "high": 1}}, "unknown key `train.lrr`; did you mean `train.lr`"),
    ({"train.lr": {"type": "float", "low": 0, "high": 1}}, "low: `train.lr` = 0.0 is invalid: expected a value > 0"),
    ({"train.lr": {"low": 0.1, "high": 1}}, "expected a mapping with type float, int or categorical"),
    ({"train.lr": {"type": "float", "low": 0.1, "high": 1, "logg": True}}, "unknown field `logg` for type float"),
    ({"train.lr": {"type": "float", "low": 0.1}}, "missing `high` for type float"),
    ({"train.lr": {"type": "float", "low": 0.0, "high": 1, "log": True}}, "`low > 0` must hold for `log=True`"),
    ({"train.lr": {"type": "float", "low": 1, "high": 0.1}}, "`low <= high` must hold"),
    ({"train.epochs": {"type": "int", "low": 1, "high": 2.5}}, "`low`, `high` and `step` must be integers"),
    ({"train.epochs": {"type": "float", "low": 1, "high": 2.5}},
     "low: `train.epochs` = 1.0 is invalid: expected an integer"),
    ({"model.name": {"type": "float", "low": 1, "high": 2}},
     "`model.name` is not a number; search it with {type: categorical"),
    ({"train.optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}},
     "choice 'adam': `train.optimizer`: unknown optimizer 'adam'; did you mean 'adamw'?"),
    ({"train.betas": {"type": "categorical", "choices": [[0.9, 0.99]]}}, "each choice must be a number, text"),
    ({"tune.trials": {"type": "int", "low": 1, "high": 5}}, "`tune` keys cannot be searched"),
])
def test_bad_search_space_entry_names_entry_and_fix(tmp_path, entry, fragment):
    recipe = write_recipe(tmp_path, entry)
    with pytest.raises(UserError) as err:
        parse_search_space(load_config(recipe), recipe)
    key = next(iter(entry))
    assert str(err.value).startswith(f"{recipe}: search_space `{key}`: ") and fragment in str(err.value)


def test_search_space_values_are_typed_by_the_recipe_schema(tmp_path):
    recipe = write_recipe(tmp_path, {
        "train.lr": {"type": "float", "low": "1e-4", "high": 1, "log": True},  # YAML reads 1e-4 as text
        "train.label_smoothing": {"type": "categorical", "choices": ["1e-1", 0.0]},
        "model.kwargs.base_width": {"type": "int", "low": 8, "high": 64, "step": 8},
    })
    params = {p.key: p.distribution for p in parse_search_space(load_config(recipe), recipe)}
    assert params["train.lr"].low == 1e-4 and params["train.lr"].log
    assert params["train.label_smoothing"].choices == (0.1, 0.0)
    assert (params["model.kwargs.base_width"].low, params["model.kwargs.base_width"].step) == (8, 8)
    overrides = to_overrides({"train.lr": 1e-05, "train.optimizer": "adamw", "model.pretrained": None})
    assert overrides == ["train.lr=1.0e-05", "train.optimizer=adamw", "model.pretrained=null"]
    cfg = load_config(recipe, overrides)
    assert (cfg.train.lr, cfg.train.optimizer, cfg.model.pretrained) == (1e-05, "adamw", None)


def test_grid_needs_choices_and_pruning_needs_eval(tmp_path):
    from ms_suite.tune import Tuner

    recipe = write_recipe(tmp_path, {"train.lr": {"type": "float", "low": 0.01, "high": 0.1}})
    with pytest.raises(UserError, match="grid needs every search_space entry as choices; give `train.lr`"):
        Tuner(recipe, ["tune.sampler=grid"], output_dir=str(tmp_path / "study"))
    assert not (tmp_path / "study").exists()
    with pytest.raises(UserError, match="no `search_space` to tune"):
        Tuner(QUICKSTART)
    with pytest.raises(UserError, match="needs per-epoch evaluation.*eval.every_epochs: 1"):
        Tuner(recipe, ["eval.every_epochs=0"])


def test_resumed_study_must_keep_its_space(tmp_path):
    first = write_recipe(tmp_path, {"train.lr": {"type": "float", "low": 0.01, "high": 0.1}}, name="a.yaml")
    other = write_recipe(tmp_path, {"train.lr": {"type": "float", "low": 0.01, "high": 0.5}}, name="b.yaml")
    study = optuna.create_study(direction="maximize", study_name="s")
    check_same_study(study, parse_search_space(load_config(first), first), load_config(first).tune, first)
    check_same_study(study, parse_search_space(load_config(first), first), load_config(first).tune, first)
    with pytest.raises(UserError, match=r"study 's' was created from .*a.yaml with a different search_space"):
        check_same_study(study, parse_search_space(load_config(other), other), load_config(other).tune, other)


# ---------------------------------------------------------------- failing trials (training replaced)

class FailingTrainer:
    """Stands in for the Trainer: raises what the recipe's lr selects."""

    ERRORS = {0.1: UserError("train.batch_size=4096 exceeds the 1437 training samples; lower train.batch_size"),
              0.2: RuntimeError("device lost\nsecond line")}

    def __init__(self, cfg, output_dir, callbacks=()):
        self.lr = cfg.train.lr

    def fit(self):
        from ms_suite.engine.trainer import TrainingDiverged

        raise self.ERRORS.get(self.lr, TrainingDiverged(f"loss became nan at step 3; lower train.lr (now {self.lr})"))


def test_failed_trials_keep_their_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(study_mod, "Trainer", FailingTrainer)
    recipe = write_recipe(tmp_path, {"train.lr": {"type": "categorical", "choices": [0.1, 0.2, 0.3]}})
    cfg = load_config(recipe)
    params = parse_search_space(cfg, recipe)
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid_choices(params, recipe)))
    study.optimize(Objective(recipe, [], params, cfg.tune, str(tmp_path)), n_trials=3, catch=(TrialFailed,))
    reasons = {t.params["train.lr"]: t.user_attrs["reason"] for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    assert reasons == {0.1: "train.batch_size=4096 exceeds the 1437 training samples; lower train.batch_size",
                       0.2: "RuntimeError: device lost",
                       0.3: "TrainingDiverged: loss became nan at step 3; lower train.lr (now 0.3)"}
    assert describe_error(KeyError("x")) == "KeyError: 'x'"


def test_cli_reports_when_no_trial_completes(tmp_path, monkeypatch, capsys):
    from ms_suite.cli.main import main

    monkeypatch.setattr(study_mod, "Trainer", FailingTrainer)
    recipe = write_recipe(tmp_path, {"train.lr": {"type": "categorical", "choices": [0.1, 0.2]}}, {"sampler": "grid"})
    code = main(["tune", "-c", recipe, "--output-dir", str(tmp_path / "study")])
    out, err = capsys.readouterr()
    assert code == 2 and "no trial completed; the table above says why" in err
    assert "RuntimeError: device lost" in out and "FAIL" in out
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert summary["counts"]["FAIL"] == 2 and summary["best"] is None and "best_config" not in summary["files"]


class EvalOnlyTrainer:
    """Stands in for the Trainer: one epoch whose eval yields only top1."""

    def __init__(self, cfg, output_dir, callbacks=()):
        self.callbacks = callbacks

    def fit(self):
        from ms_suite.engine.callbacks import TrainState

        state = TrainState(epochs=1, steps_per_epoch=1, epoch=1, metrics={"top1": 50.0, "samples": 10})
        for callback in self.callbacks:
            if isinstance(callback, ReportToTrial):
                callback.on_epoch_end(state)
        return {"epochs": 1, "metrics": state.metrics}


def test_unknown_metric_stops_the_study(tmp_path, monkeypatch, capsys):
    from ms_suite.cli.main import main

    monkeypatch.setattr(study_mod, "Trainer", EvalOnlyTrainer)
    recipe = write_recipe(tmp_path, {"train.lr": {"type": "categorical", "choices": [0.1, 0.2]}},
                          {"sampler": "grid", "metric": "acc"})
    assert main(["tune", "-c", recipe, "--output-dir", str(tmp_path / "study"), "--study", "m"]) == 2
    assert "tune.metric `acc` is not an eval metric of this task (top1); set tune.metric" in capsys.readouterr().err
    trials = optuna.load_study(study_name="m", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}").trials
    assert len(trials) == 1 and trials[0].state.name == "FAIL"


# ---------------------------------------------------------------- a real study: killed, resumed, pruned

@pytest.fixture(scope="session")
def study_run(tmp_path_factory, cache_env):
    """Start `ms-suite tune`, SIGKILL it once trial 0 has finished and trial 1 is training, then resume."""
    root = tmp_path_factory.mktemp("tune")
    recipe, folder = root / "grid.yaml", root / "study"
    recipe.write_text(STUDY_RECIPE)
    args = ["tune", "-c", str(recipe), "--study", "s", "--output-dir", str(folder)]
    log = open(root / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ms_suite", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **cache_env}, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not (folder / "trial_0001" / "train.log").exists():  # trial 0 told, trial 1 training
            assert proc.poll() is None, f"tune exited early:\n{(root / 'first.log').read_text()[-3000:]}"
            assert time.time() < deadline, "trial 1 never started"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group we started
        proc.wait()
        log.close()
    storage = f"sqlite:///{folder / 'study.db'}"
    before = optuna.load_study(study_name="s", storage=storage).trials
    resumed = cli(*args, env=cache_env)
    after = optuna.load_study(study_name="s", storage=storage).trials
    return folder, before, after, resumed


@pytest.mark.slow
def test_killed_study_resumes_losing_only_the_running_trial(study_run):
    _, before, after, resumed = study_run
    states = [t.state.name for t in before]
    assert states == ["COMPLETE", "RUNNING"], states
    assert before[0].params == {"train.lr": GOOD_LR}, "Optuna's grid order changed; pick another tune.seed"
    assert [t.state.name for t in after][:2] == ["COMPLETE", "FAIL"] and after[0].value == before[0].value
    assert after[1].user_attrs["reason"].startswith("interrupted: its process")
    retried = after[2]
    assert retried.params == before[1].params and retried.system_attrs["failed_trial"] == 1
    assert len(after) == 3 and "trial(s) 1 were interrupted; queued again" in resumed.stdout


@pytest.mark.slow
def test_poor_trial_is_pruned_after_first_epoch(study_run):
    folder, _, after, resumed = study_run
    good, pruned = after[0], after[2]
    assert pruned.state.name == "PRUNED" and pruned.params == {"train.lr": BAD_LR}
    assert list(pruned.intermediate_values) == [1] and pruned.intermediate_values[1] < good.intermediate_values[1]
    assert pruned.user_attrs["reason"].startswith("pruned after epoch 1 (top1 ")
    run = json.loads((folder / "trial_0002" / "summary.json").read_text())
    assert run["epochs"] == 1 and run["stopped_early"]
    assert "PRUNED" in resumed.stdout and "train the best:" in resumed.stdout


@pytest.mark.slow
def test_study_writes_summary_plot_and_best_config_that_trains(study_run, cache_env, tmp_path):
    folder, _, after, _ = study_run
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best"]["trial"] == 0 and summary["best"]["value"] == after[0].value
    assert summary["counts"] == {"COMPLETE": 1, "PRUNED": 1, "FAIL": 1, "RUNNING": 0}
    assert [r["state"] for r in summary["trials"]] == ["COMPLETE", "FAIL", "PRUNED"]
    assert (folder / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["base"] == [] and best["search_space"] == {} and best["train"]["lr"] == GOOD_LR
    assert best["model"]["kwargs"] == {"base_width": 8} and "best of study s (trial 0" in best["description"]
    out = tmp_path / "best_run"
    cli("train", "-c", str(folder / "best.yaml"), "--set", "train.epochs=1", "--output-dir", str(out), env=cache_env)
    trained = yaml.safe_load((out / "config.yaml").read_text())
    assert trained["train"]["lr"] == GOOD_LR and json.loads((out / "summary.json").read_text())["epochs"] == 1
