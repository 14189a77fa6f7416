"""What the per-step bookkeeping costs, against real step times on this machine.

Every run times each optimizer step as data wait + compute (``Trainer._optimizer_step``) and
records metrics.jsonl and the MFU report (``recipe_callbacks``); MindInsight summaries are optional.
This measures, per optimizer step:

* split: ``Trainer._optimizer_step`` minus a bare loop that only fetches the batch, runs the step
  and reads the loss (both on a stub step, so only the bookkeeping differs; an upper bound, as it
  also counts the loss averaging and the divergence check);
* callbacks: MetricsLog + MfuReport, and SummaryCallback (every 10 steps), on a real file;
* step: the real step time of two quickstart variants, from a one-epoch ``Trainer.fit``;
* the CPU that ``mindspore.SummaryRecord``'s writer process burns while idle (why the suite
  writes summary files in-process instead).

    .venv/bin/python benchmarks/step_split_overhead.py [--quick]   # --quick: the tiny variant only

Target: the split costs at most 1% of the smallest real step measured.
"""
from __future__ import annotations

import os
import tempfile
import time
import types

from common import ROOT, LoadWatch, finish, median, parse_args, progress, target

REPEATS, STEPS = 7, 20_000


class StubStep:
    """Returns a ready loss: what is left to time is the loop's own bookkeeping."""

    class Loss:
        def asnumpy(self):
            return 0.5

    loss, finite = Loss(), True

    def __call__(self, apply, *batch):
        return self.loss, self.finite


def per_step_us(fn, steps: int = STEPS, repeats: int = REPEATS) -> float:
    """Median over ``repeats`` of the mean time per call of ``fn`` (microseconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - start) / steps * 1e6)
    return median(times)


def split_cost_us() -> float:
    from ms_suite.engine.trainer import Trainer

    batch = (object(), object())
    stub = types.SimpleNamespace(step=StubStep(), ema=None,
                                 cfg=types.SimpleNamespace(train=types.SimpleNamespace(loss_scale="none")))
    iterator = iter(lambda: batch, None)  # endless

    def bare() -> float:
        loss, _ = stub.step(True, *next(iterator))
        return float(loss.asnumpy())

    def with_split():
        return Trainer._optimizer_step(stub, iterator, 1)

    return per_step_us(with_split) - per_step_us(bare)


def fake_state(run_dir: str):
    context = types.SimpleNamespace(dist=types.SimpleNamespace(is_main=True, rank=0), global_batch=32,
                                    run_dir=types.SimpleNamespace(path=run_dir), train_step=None, net=None)
    return types.SimpleNamespace(context=context, step=0, epoch=0, step_in_epoch=0, steps_per_epoch=10**9,
                                 loss=0.5, lr=0.1, data_s=0.001, compute_s=0.02, metrics={})


def callbacks_cost_us(callbacks) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        state = fake_state(run_dir)
        for cb in callbacks:
            cb.on_train_begin(state)

        def one_step():
            state.step += 1
            state.step_in_epoch += 1
            for cb in callbacks:
                cb.on_step_end(state)

        cost = per_step_us(one_step, steps=STEPS // 10)
        for cb in callbacks:
            if hasattr(cb, "file") and cb.file is not None:
                cb.file.close()
        return cost


def summary_callback():
    from ms_suite.config.schema import SummaryConfig
    from ms_suite.engine.callbacks import SummaryCallback

    callback = SummaryCallback(SummaryConfig(enabled=True, every_n_steps=10))
    callback.graph_written = True  # the stub trainer has no compiled graph
    return callback


def real_step_ms(overrides, runs_dir: str, name: str) -> float:
    from ms_suite import api

    summary = api.train(os.path.join(ROOT, "configs", "quickstart.yaml"), os.path.join(runs_dir, name),
                        overrides=["train.epochs=1", *overrides], progress=False)
    return summary["step_data_ms"] + summary["step_compute_ms"]


def summaryrecord_idle_cpu_share(seconds: float = 3.0) -> float:
    """CPU seconds per wall second used by SummaryRecord's writer processes while nothing is recorded."""
    import mindspore as ms
    import psutil

    with tempfile.TemporaryDirectory() as log_dir:
        record = ms.SummaryRecord(log_dir)
        try:
            time.sleep(1.0)  # let the writer pool start
            children = psutil.Process().children(recursive=True)
            before = sum(sum(c.cpu_times()[:2]) for c in children)
            time.sleep(seconds)
            after = sum(sum(c.cpu_times()[:2]) for c in children)
        finally:
            record.close()
    return (after - before) / seconds


def main() -> None:
    from ms_suite.engine.callbacks import MetricsLog, MfuReport

    args = parse_args(__doc__)
    load = LoadWatch()
    load.check("the bookkeeping timings")
    progress("timing the data/compute split on a stub step ...")
    split = split_cost_us()
    progress("timing the always-on callbacks and the summary callback ...")
    always_on = callbacks_cost_us([MetricsLog(10), MfuReport()])
    summary = callbacks_cost_us([summary_callback()])
    variants = {"tiny (base_width 8, b32)": ["model.kwargs.base_width=8"]}
    if not args.quick:
        variants["quickstart (base_width 64, b32)"] = []
    steps = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        for i, (label, overrides) in enumerate(variants.items()):
            load.check(label)
            progress(f"one epoch of {label} for its real step time ...")
            steps[label] = real_step_ms(overrides, runs_dir, f"run{i}")
    progress("measuring mindspore.SummaryRecord's idle writer process ...")
    load.check("SummaryRecord")
    idle_cpu = summaryrecord_idle_cpu_share()

    costs = {"data/compute split (Trainer._optimizer_step)": split,
             "metrics.jsonl + MFU report callbacks": always_on,
             "MindInsight summary callback (every 10 steps)": summary}
    headers = ["per-step cost", "us/step"] + [f"% of {label} step ({ms:.1f} ms)" for label, ms in steps.items()]
    rows = [[name, f"{us:.2f}"] + [f"{100 * us / 1000 / ms:.4f}" for ms in steps.values()]
            for name, us in costs.items()]
    share = split / 1000 / min(steps.values())
    result = {**target(share, 0.01, key="split_share", at_most=True), "split_us_per_step": round(split, 3),
              "callbacks_us_per_step": round(always_on, 3), "summary_us_per_step": round(summary, 3),
              "step_ms": {k: round(v, 3) for k, v in steps.items()},
              "summaryrecord_idle_cpu_cores": round(idle_cpu, 3)}
    notes = [f"mindspore.SummaryRecord's writer process while idle: {idle_cpu:.2f} CPU cores busy "
             f"(of {os.cpu_count()})"]
    finish("Per-step bookkeeping against real step times", headers, rows, result, load, notes)


if __name__ == "__main__":
    main()
