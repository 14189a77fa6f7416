"""`ms-suite list` reads the zoo's parameter and FLOP counts from the file shipped with the package;
that file must follow the model sources and agree with a fresh measurement."""
import json

import pytest

from ms_suite.models import list_models
from ms_suite.models.flops import measure_model
from ms_suite.models.stats import SHIPPED_STATS, model_stats, stats_cache_file, stats_key


def shipped() -> dict:
    with open(SHIPPED_STATS) as fh:
        return json.load(fh)


def test_shipped_stats_cover_every_model_at_its_current_source():
    stale = [name for name in list_models() if stats_key(name) not in shipped()]
    assert not stale, f"model families changed since zoo_stats.json was written; run `make zoo-stats`: {stale}"


@pytest.mark.parametrize("name", ["resnet18_cifar", "bert_tiny_cls"])
def test_shipped_stats_equal_a_fresh_measurement(name):
    assert shipped()[stats_key(name)] == measure_model(name)


def test_listing_measures_nothing_on_a_fresh_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MS_SUITE_CACHE", str(tmp_path))
    assert [model_stats(name) for name in list_models()]
    assert not (tmp_path / "zoo_stats.json").exists() and stats_cache_file() == str(tmp_path / "zoo_stats.json")
