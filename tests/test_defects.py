"""Regression tests for the first-hour defects of issue 16 (best metric on resume, seeded dropout,
Ctrl-C, untouched run directories on failure, one-line errors, WordPiece vocab, compile cache)."""
import glob
import json
import os

import pytest

from conftest import ROOT, TINY, cli

QUICKSTART = "configs/quickstart.yaml"


def _meta(path):
    from ms_suite.checkpoint import read_checkpoint

    return read_checkpoint(path)[1]


@pytest.mark.slow
def test_step_checkpoints_carry_the_best_metric_and_resume_keeps_it(tmp_path, cache_env):
    run = tmp_path / "run"
    steps = [*TINY, "train.epochs=2", "checkpoint.every_n_steps=5", "checkpoint.keep_last=20"]
    cli("train", "-c", QUICKSTART, "--output-dir", str(run), "--set", *steps)
    summary = json.loads((run / "summary.json").read_text())
    first_epoch = _meta(str(run / "checkpoints" / "step_00000022.ckpt"))  # 1437 samples / 64 = 22 steps
    assert first_epoch["epoch"] == 1 and first_epoch["best_metric"] == first_epoch["metrics"]["top1"]
    mid_second = _meta(str(run / "checkpoints" / "step_00000030.ckpt"))
    assert mid_second["step_in_epoch"] == 8 and mid_second["best_metric"] == first_epoch["best_metric"]

    # Resume from the mid-epoch checkpoint: the best so far comes back with it.
    for path in glob.glob(str(run / "checkpoints" / "step_*.ckpt")):
        if int(os.path.basename(path)[5:13]) > 30:
            os.remove(path)
    cli("train", "-c", QUICKSTART, "--output-dir", str(run), "--resume", "auto", "--set", *steps)
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["best_metric"] == summary["best_metric"] == pytest.approx(
        max(first_epoch["best_metric"], resumed["metrics"]["top1"]))
    assert _meta(str(run / "checkpoints" / "best.ckpt"))["best_metric"] == resumed["best_metric"]


def _bert_cls_config(tmp_path, *overrides):
    from bert_fixtures import write_classification, write_vocab
    from ms_suite.config import load_config

    data = write_classification(str(tmp_path / "sentiment"), "csv", train=64, eval_=16)
    vocab = write_vocab(str(tmp_path / "vocab.txt"))
    return load_config(os.path.join(ROOT, "configs/bert/bert_tiny_finetune_cls.yaml"),
                       [f"data.path={data}", f"data.vocab={vocab}", "data.seq_len=16", "data.num_workers=1",
                        "train.epochs=2", "checkpoint.every_n_steps=2", "checkpoint.keep_last=10", *overrides])


def _weights(path):
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if hasattr(v, "asnumpy")}


@pytest.mark.slow
def test_bert_dropout_is_seeded_and_resume_is_exact(tmp_path, cache_env):
    """Two identical fine-tuning runs (dropout 0.1) end with identical weights, a different
    train.seed does not, and a run resumed mid-epoch from a step checkpoint ends where the
    uninterrupted run does (the masks follow the training position, not a kernel's state)."""
    import shutil

    import numpy as np

    from ms_suite.engine.trainer import Trainer

    final = "checkpoints/step_00000008.ckpt"  # 64 samples / batch 16 = 4 steps x 2 epochs
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("other_seed", 8)):
        Trainer(_bert_cls_config(tmp_path, f"train.seed={seed}"), str(tmp_path / name), progress=False).fit()
        runs[name] = _weights(str(tmp_path / name / final))
    dropout = _bert_cls_config(tmp_path).model.kwargs.get("hidden_dropout_prob", 0.1)
    assert dropout > 0
    for key in runs["a"]:
        np.testing.assert_array_equal(runs["b"][key], runs["a"][key], err_msg=key)
    classifier = "step.optimizer.classifier.weight" if "step.optimizer.classifier.weight" in runs["a"] else \
        next(k for k in runs["a"] if k.endswith("classifier.weight"))
    assert not np.array_equal(runs["other_seed"][classifier], runs["a"][classifier])

    shutil.copytree(tmp_path / "a", tmp_path / "resumed")
    for path in glob.glob(str(tmp_path / "resumed" / "checkpoints" / "step_*.ckpt")):
        if int(os.path.basename(path)[5:13]) > 6:  # keep step 6: epoch 2, 2 of its 4 steps done
            os.remove(path)
    Trainer(_bert_cls_config(tmp_path, "train.seed=7"), str(tmp_path / "resumed"), resume="auto",
            progress=False).fit()
    resumed = _weights(str(tmp_path / "resumed" / final))
    for key in runs["a"]:
        np.testing.assert_allclose(resumed[key], runs["a"][key], rtol=1e-5, atol=1e-6, err_msg=key)


BERT_CLS = "configs/bert/bert_tiny_finetune_cls.yaml"


def _snapshot(folder):
    return {os.path.relpath(p, folder): open(p, "rb").read()
            for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)}


@pytest.mark.slow
def test_a_failed_command_leaves_run_directories_alone(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("data:\n  path: data/good\n")
    (run / "train.log").write_text("the first run's log\n")
    before = _snapshot(str(run))
    proc = cli("train", "-c", BERT_CLS, "--output-dir", str(run), "--resume", "auto",
               "--set", f"data.path={tmp_path / 'nope'}", check=False)
    assert proc.returncode == 2 and "error:" in proc.stderr
    assert _snapshot(str(run)) == before

    fresh = tmp_path / "fresh"
    proc = cli("train", "-c", BERT_CLS, "--output-dir", str(fresh), "--set", f"data.path={tmp_path / 'nope'}",
               check=False)
    assert proc.returncode == 2 and not fresh.exists()


@pytest.mark.slow
def test_device_line_once_and_a_failed_runs_error_in_its_log(tmp_path, cache_env):
    run = tmp_path / "nan"
    proc = cli("train", "-c", QUICKSTART, "--output-dir", str(run), "--set", *TINY, "train.lr=1e12",
               "train.warmup_epochs=0", check=False)
    assert proc.returncode == 2
    error = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    log = (run / "train.log").read_text()
    assert f"run failed: {error[len('error: '):]}" in log
    assert proc.stderr.count("device CPU") == 1 and log.count("device CPU") == 1
    assert (run / "config.yaml").is_file()


def _final_weights(cfg, run_dir):
    from ms_suite.engine.trainer import Trainer

    summary = Trainer(cfg, str(run_dir), progress=False).fit()
    return _weights(summary["final_checkpoint"]), summary


def _cold_weights(recipe, overrides, run_dir):
    """Final weights of a run with the compile cache off (used in a fresh worker process)."""
    from ms_suite.config import load_config

    return _final_weights(load_config(os.path.join(ROOT, recipe), [*overrides, "runtime.compile_cache=false"]),
                          run_dir)[0]


def _labelled_data(folder, labels):
    """The fixture sentences relabelled round-robin with ``labels``: 48 train and 24 dev rows."""
    import csv

    from bert_fixtures import sentiment_rows

    os.makedirs(folder, exist_ok=True)
    for name, n, seed in (("train", 48, 1), ("dev", 24, 2)):
        with open(os.path.join(folder, f"{name}.csv"), "w", newline="") as fh:
            writer = csv.DictWriter(fh, ["text", "label"])
            writer.writeheader()
            writer.writerows({"text": row["text"], "label": labels[i % len(labels)]}
                             for i, row in enumerate(sentiment_rows(n, seed)))
    return folder


@pytest.mark.slow
def test_compile_cache_never_serves_another_runs_graph(tmp_path):
    """In one cache folder, runs that differ in data (same shapes: a cache hit; or more classes),
    vocabulary, sequence length, optimizer, accumulation, EMA and loss scaling each end bit for bit
    where a cold run does.
    Before the cache was keyed on the built train cell, a 3-class run after a 2-class one failed
    with the 2-class optimizer state ("'grad': 1024 and 'var': 1536").

    The cold references run in a second process while this one fills and reads the cache (graph
    compilation, most of each run, is single-threaded), so the 8 comparisons cost about 10 runs'
    time instead of 18. BERT has one layer and evaluates in one batch: fewer graphs to compile."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from bert_fixtures import vocab_words, write_classification, write_vocab
    from ms_suite.config import load_config

    cache = f"runtime.cache_dir={tmp_path / 'cache'}"
    small_vocab = write_vocab(str(tmp_path / "vocab.txt"))
    big_vocab = tmp_path / "vocab_big.txt"
    big_vocab.write_text("\n".join(vocab_words() + [f"extra{i}" for i in range(40)]) + "\n")
    bert = [f"data.path={write_classification(str(tmp_path / 'two'), 'csv', train=48, eval_=24)}",
            f"data.vocab={small_vocab}", "data.seq_len=16", "data.num_workers=1", "train.epochs=1",
            "model.kwargs.num_hidden_layers=1", "eval.batch_size=24"]
    resnet = [*TINY, "eval.batch_size=512"]  # one eval batch: fewer graphs to compile
    base = {"bert": (BERT_CLS, bert), "resnet": (QUICKSTART, resnet)}
    variants = [  # (model, overrides on its base); all but the first need graphs of their own
        ("bert", [f"data.path={_labelled_data(str(tmp_path / 'other'), 'xy')}"]),
        ("bert", [f"data.path={_labelled_data(str(tmp_path / 'three'), 'abc')}"]),
        ("bert", [f"data.vocab={big_vocab}"]),
        ("bert", ["data.seq_len=24"]),
        ("bert", ["train.optimizer=lamb"]),
        ("bert", ["train.accumulation_steps=2", "train.batch_size=8"]),
        ("bert", ["train.ema_decay=0.9"]),
        ("resnet", ["train.loss_scale=dynamic"]),
    ]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as cold_worker:
        colds = [cold_worker.submit(_cold_weights, base[name][0], [*base[name][1], *extra], str(tmp_path / f"cold{i}"))
                 for i, (name, extra) in enumerate(variants)]
        for name, (recipe, overrides) in base.items():  # fill the cache with each model's base graphs
            _final_weights(load_config(os.path.join(ROOT, recipe), [*overrides, cache]), tmp_path / f"base_{name}")
        for i, (name, extra) in enumerate(variants):
            recipe, overrides = base[name]
            warm, _ = _final_weights(load_config(os.path.join(ROOT, recipe), [*overrides, *extra, cache]),
                                     tmp_path / f"warm{i}")
            cold = colds[i].result()
            assert warm.keys() == cold.keys(), extra
            for key in cold:
                np.testing.assert_array_equal(warm[key], cold[key], err_msg=f"{extra}: {key}")
    # Same shapes from other files share the base run's graphs; every other variant compiled its own.
    assert len(os.listdir(tmp_path / "cache" / "compile")) == len(base) + len(variants) - 1


def _interrupt_training(run_dir, signo):
    """Start a quickstart run, send ``signo`` once its first checkpoint exists; (returncode, stderr)."""
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "ms_suite", "train", "-c", QUICKSTART, "--output-dir", str(run_dir), "--set",
            "model.kwargs.base_width=8", "train.epochs=3", "train.batch_size=16", "checkpoint.every_n_steps=10",
            "eval.every_epochs=0"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not glob.glob(str(run_dir / "checkpoints" / "step_*.ckpt")):
        assert proc.poll() is None and time.time() < deadline, "training ended before the signal"
        time.sleep(0.05)
    proc.send_signal(signo)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.slow
@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_stops_training_at_a_step_with_a_checkpoint(tmp_path, cache_env, name, code):
    import signal

    run = tmp_path / "run"
    returncode, stderr = _interrupt_training(run, getattr(signal, name))
    assert returncode == code, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: {name} at step ") and "--resume auto" in last
    step = int(last.split(" at step ")[1].split(",")[0])
    assert (run / "checkpoints" / f"step_{step:08d}.ckpt").is_file()
    assert not glob.glob(str(run / "checkpoints" / "*tmp*")) and not (run / "summary.json").exists()
    assert f"run failed: interrupted: {name}" in (run / "train.log").read_text()


def test_prepare_data_vocab_builds_a_wordpiece_vocab_bert_tokenizers_agree_on(tmp_path):
    """A vocab built from a corpus tokenizes with the suite's tokenizer exactly as transformers'
    BertTokenizer does with the same vocab.txt, and splits unseen words into ## pieces."""
    from transformers import BertTokenizer

    from bert_fixtures import write_corpus
    from ms_suite.data.text import WordPieceTokenizer

    corpus = write_corpus(str(tmp_path / "corpus.txt"))
    proc = cli("prepare-data", "vocab", "--input", corpus, "--output", str(tmp_path / "vocab"), "--vocab-size", "120",
               "--min-frequency", "1")
    assert "tokens" in proc.stdout
    words = (tmp_path / "vocab" / "vocab.txt").read_text().split("\n")
    assert words[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and 60 < len([w for w in words if w]) <= 120
    ours = WordPieceTokenizer(str(tmp_path / "vocab"))
    reference = BertTokenizer(str(tmp_path / "vocab" / "vocab.txt"), do_lower_case=True)
    for text in ["The Farmer feeds the cows near the barn.", "A sailor crossed the harbors!",
                 "Robots orbit the Moon, scanning comets."]:
        assert ours.tokenize(text) == reference.tokenize(text)
    assert any(piece.startswith("##") for piece in ours.tokenize("The farmers feeds"))


@pytest.mark.slow
def test_a_step_that_does_not_fit_the_data_is_a_one_line_error(tmp_path, cache_env):
    """A 3-channel ResNet stem on the 1-channel digits fails to compile: exit 2, one line."""
    proc = cli("train", "-c", QUICKSTART, "--output-dir", str(tmp_path / "run"), "--set", *TINY,
               "model.kwargs.in_chans=3", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not fit the batches (64x1x" in errors[0] and "model.kwargs" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_ctrl_c_marks_the_running_tune_trial_interrupted(tmp_path, cache_env):
    import signal
    import subprocess
    import sys
    import time

    import optuna

    from test_tune import STUDY_RECIPE

    recipe, folder = tmp_path / "grid.yaml", tmp_path / "study"
    recipe.write_text(STUDY_RECIPE)
    proc = subprocess.Popen([sys.executable, "-m", "ms_suite", "tune", "-c", str(recipe), "--study", "s",
                             "--output-dir", str(folder)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    log, deadline = folder / "trial_0000" / "train.log", time.time() + 600
    while not (log.exists() and "first step done" in log.read_text()):
        assert proc.poll() is None and time.time() < deadline, "trial 0 never trained"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted: SIGINT at step")
    trial = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}").trials[0]
    assert trial.state.name == "FAIL" and trial.user_attrs["reason"].startswith("interrupted")
