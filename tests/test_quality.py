"""Quality floor: the README's quickstart, trained end to end as a user runs it, learns the task."""
import json

import pytest

from conftest import cli

QUICKSTART_FLOOR = 95.0  # top-1 % on the 360 held-out digits (README: >= 95%); chance is 10%


@pytest.mark.slow
def test_quickstart_reaches_95_percent_top1_on_the_held_out_split(tmp_path, cache_env):
    out = tmp_path / "quickstart"
    cli("train", "-c", "configs/quickstart.yaml", "--output-dir", str(out), timeout=3600)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 8 and summary["metrics"]["samples"] == 360  # the whole recipe, the whole split
    assert summary["metrics"]["top1"] >= QUICKSTART_FLOOR, summary["metrics"]
