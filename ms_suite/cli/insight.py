"""``insight start|stop`` (MindInsight on a runs folder) and ``plot`` (curves of runs)."""
from __future__ import annotations

import argparse

from ms_suite.cli.table import format_mapping


def port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    insight = sub.add_parser("insight", help="start or stop MindInsight on a folder of runs")
    actions = insight.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="serve the runs' summaries and profiles; prints the URL")
    start.add_argument("--runs", default="runs", help="folder holding the run directories (default runs/)")
    start.add_argument("--port", type=port, default=8080, help="port (default 8080)")
    start.set_defaults(func=cmd_insight_start)
    stop = actions.add_parser("stop", help="stop the MindInsight started on --port")
    stop.add_argument("--port", type=port, default=8080, help="port (default 8080)")
    stop.set_defaults(func=cmd_insight_stop)

    plot = sub.add_parser("plot", help="draw loss, eval-metric and throughput curves of runs")
    plot.add_argument("runs", nargs="+", help="run directories, e.g. runs/a runs/b")
    plot.add_argument("--output", default="curves.png", help="image file (.png, .pdf, .svg; default curves.png)")
    plot.add_argument("--metric", help="eval metric to draw (default: the runs' monitored metric)")
    plot.set_defaults(func=cmd_plot)


def cmd_insight_start(args: argparse.Namespace) -> int:
    from ms_suite import api

    url = api.insight_start(args.runs, args.port)
    print(format_mapping([("MindInsight", url), ("runs", args.runs),
                          ("stop with", f"ms-suite insight stop --port {args.port}")]))
    return 0


def cmd_insight_stop(args: argparse.Namespace) -> int:
    from ms_suite import api

    api.insight_stop(args.port)
    print(f"stopped MindInsight on port {args.port}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ms_suite import api

    print(f"wrote {api.plot(args.runs, args.output, args.metric)}")
    return 0
