"""One registry mechanism for every extension: discovery of new files, did-you-mean errors, listing,
and recipe validation against the registries (a new dataset or optimizer needs no edit elsewhere)."""
import os
import sys
import textwrap

import numpy as np
import pytest

from ms_suite.config import load_config
from ms_suite.errors import UserError
from ms_suite.registry import ALL, DATASETS, OPTIMIZERS, Registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def test_a_new_file_in_a_registry_package_is_found_without_edits(tmp_path, monkeypatch):
    package = tmp_path / "my_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("alpha", "beta"):
        (package / f"{name}.py").write_text(textwrap.dedent(f"""
            from ms_suite.registry import ALL
            THINGS = ALL["things"]

            @THINGS.register("{name}")
            def build():
                return "{name}"
        """))
    things = Registry("thing", ["my_plugins"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ALL, "things", things)
    try:
        assert things.names() == ["alpha", "beta"]
        assert things.get("beta")() == "beta"
        with pytest.raises(UserError, match="unknown thing 'alpah'; did you mean 'alpha'"):
            things.get("alpah")
    finally:
        for module in [m for m in sys.modules if m.startswith("my_plugins")]:
            del sys.modules[module]


def test_every_kind_lists_its_builtins():
    expected = {"models": "resnet18_cifar", "datasets": "digits", "tasks": "image-classification",
                "optimizers": "lamb", "schedules": "cosine", "compression": "simqat", "converters": "hf"}
    for kind, name in expected.items():
        assert name in ALL[kind].names(), kind


def test_a_registered_dataset_is_a_valid_recipe_choice_and_builds():
    from ms_suite.data import build_dataset, dataset_info
    from ms_suite.data.source import Source, generator_dataset

    @DATASETS.register("tiny_ramp")
    class TinyRamp(Source):
        num_classes, input_shape, num_samples = 2, (1, 4, 4), {"train": 8, "eval": 4}

        def leaf(self, split, sampler, seed, epoch):
            def row(i):
                return np.full((1, 4, 4), i, np.float32), np.int32(i % 2)

            return generator_dataset(self.num_samples[split], row, sampler, 1)

    try:
        cfg = load_config(QUICKSTART, ["data.name=tiny_ramp"])
        assert dataset_info(cfg.data).num_samples == {"train": 8, "eval": 4}
        images, labels = next(build_dataset(cfg.data, "eval", 4).create_tuple_iterator(num_epochs=1))
        assert images.shape == (4, 1, 4, 4) and labels.asnumpy().tolist() == [0, 1, 0, 1]
    finally:
        DATASETS._entries.pop("tiny_ramp")  # noqa: SLF001 (keep the registry as the package defines it)


def test_a_registered_optimizer_is_built_from_the_recipe():
    from mindspore import nn

    from ms_suite.engine.optim import build_optimizer

    @OPTIMIZERS.register("plain_sgd")
    def plain_sgd(groups, lr, cfg):
        return nn.SGD(groups, learning_rate=lr)

    try:
        cfg = load_config(QUICKSTART, ["train.optimizer=plain_sgd"])
        optimizer = build_optimizer(nn.Dense(3, 2), cfg.train, np.full(4, 0.1, np.float32))
        assert type(optimizer) is nn.SGD
    finally:
        OPTIMIZERS._entries.pop("plain_sgd")  # noqa: SLF001


@pytest.mark.parametrize("override, message", [
    ("data.name=cifar11", "`data.name`: unknown dataset 'cifar11'; did you mean 'cifar10'?"),
    ("train.schedule=cosin", "`train.schedule`: unknown lr schedule 'cosin'; did you mean 'cosine'?"),
    ("model.name=resnet19", "`model.name`: unknown model 'resnet19'; did you mean 'resnet18'? (see `ms-suite list`)"),
    ("compression.algorithm=slbb", "`compression.algorithm`: unknown compression algorithm 'slbb'; did you mean 'slb'?"),
])
def test_recipe_names_are_checked_against_the_registries(override, message):
    with pytest.raises(UserError) as err:
        load_config(QUICKSTART, [override])
    assert message in str(err.value)
