"""Recipes: every YAML parses; inheritance, overrides and strict validation."""
import glob
import os

import pytest
import yaml

from ms_suite.config import from_dict, load_config, save_config
from ms_suite.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_recipe_loads(path):
    cfg = load_config(path)
    assert cfg.model.name and cfg.train.epochs >= 1


def test_recipe_models_are_registered():
    from ms_suite.models import list_models

    names = set(list_models())
    for path in RECIPES:
        assert load_config(path).model.name in names, path


def test_inheritance_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train: {epochs: 5, lr: 0.5}\ndata: {name: cifar10}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: [base.yaml]\ntrain: {epochs: 7}\n")
    cfg = load_config(str(child), ["train.lr=1e-3", "data.path=/x", "model.num_classes=null"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.name, cfg.data.path) == (7, 0.001, "cifar10", "/x")
    assert cfg.model.num_classes is None


@pytest.mark.parametrize("override, fragment", [
    ("train.lrr=0.1", "did you mean `train.lr`"),
    ("train.epochs=0", "`train.epochs` = 0 is invalid: expected a value >= 1"),
    ("train.optimizer=adam", "unknown optimizer 'adam'; did you mean 'adamw'? (known: adamw, lamb, sgd)"),
    ("train.epochs=ten", "expected an integer"),
    ("data.augment=maybe", "true or false"),
    ("train", "expected KEY=VALUE"),
    ("parallel.grad_reduce_dtype=int8", "parallel.grad_reduce_dtype"),
    ("parallel.grad_buckets=-1", "`parallel.grad_buckets` = -1 is invalid: expected a value >= 0"),
])
def test_bad_override_names_key_and_fix(override, fragment):
    with pytest.raises(UserError, match=None) as err:
        load_config(os.path.join(ROOT, "configs", "quickstart.yaml"), [override])
    assert fragment in str(err.value)


def test_grad_reduce_keys_default_to_mindspores_reducer_and_accept_overrides():
    quickstart = os.path.join(ROOT, "configs", "quickstart.yaml")
    default = load_config(quickstart).parallel
    assert default.grad_reduce_dtype == "float32" and default.grad_buckets is None
    cfg = load_config(quickstart, ["parallel.grad_reduce_dtype=float16", "parallel.grad_buckets=4"]).parallel
    assert cfg.grad_reduce_dtype == "float16" and cfg.grad_buckets == 4


def test_unknown_key_names_file_and_closest_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(UserError) as err:
        load_config(str(bad))
    msg = str(err.value)
    assert "bad.yaml" in msg and "`train.epoch`" in msg and "`train.epochs`" in msg


def test_key_from_base_file_is_blamed_on_that_file(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {momentun: 0.9}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\n")
    with pytest.raises(UserError, match="base.yaml: unknown key `train.momentun`; did you mean `train.momentum`"):
        load_config(str(tmp_path / "child.yaml"))


def test_circular_base_and_bad_yaml(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(UserError, match="circular"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(tmp_path / "c.yaml"))
    with pytest.raises(UserError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(os.path.join(ROOT, "configs", "resnet", "resnet50_imagenet.yaml"), ["train.epochs=3"])
    out = tmp_path / "config.yaml"
    save_config(cfg, str(out))
    again = from_dict(yaml.safe_load(out.read_text()))
    assert again == cfg
