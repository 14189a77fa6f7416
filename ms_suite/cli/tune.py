"""``tune``: a hyper-parameter search over a recipe's ``search_space``."""
from __future__ import annotations

import argparse

from ms_suite.cli.run import add_recipe_args
from ms_suite.cli.table import format_mapping, format_table


def register(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser("tune", help="search a recipe's search_space with Optuna (TPE, random or grid)")
    add_recipe_args(tune)
    tune.add_argument("--trials", type=int, help="trials the study should finish (default: tune.trials)")
    tune.add_argument("--study", help="study to create, resume or join (default: <recipe>-<timestamp>)")
    tune.add_argument("--storage", metavar="URL",
                      help="study database, e.g. postgresql+psycopg://user:pw@host/db for several machines "
                           "(default: sqlite in the study folder)")
    tune.add_argument("--output-dir", help="study folder for trial runs and results (default runs/tune/<study>)")
    tune.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna

    from ms_suite import api
    from ms_suite.errors import UserError

    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    summary = api.tune(args.config, args.overrides, study=args.study, output_dir=args.output_dir,
                       storage=args.storage, trials=args.trials)
    _print_results(summary)
    if not summary["best"]:
        raise UserError(f"study {summary['study']}: no trial completed; the table above says why")
    print(f"train the best: ms-suite train -c {summary['files']['best_config']}")
    return 0


def _print_results(summary: dict) -> None:
    """The full trial table, then the best value and parameters, then the files written."""
    from ms_suite.tune import record_cells, table_headers

    keys = list(summary["search_space"])
    print()
    print(format_table(table_headers(summary["metric"], keys), [record_cells(r, keys) for r in summary["trials"]]))
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary["counts"].items() if n)
    rows = [("study", summary["study"]), ("trials", counts)]
    best = summary["best"]
    if best:
        rows.append((f"best {summary['metric']}", f"{best['value']:.4g} (trial {best['trial']})"))
        rows += [(f"  {key}", value) for key, value in best["params"].items()]
    rows += [(name.replace("_", " "), path) for name, path in summary["files"].items()]
    print(format_mapping(rows))
