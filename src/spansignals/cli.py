"""The ``spansignals`` command line (also ``python -m spansignals``).

Subcommands: ``collector`` (run the collector processor), ``check-config`` (validate a file;
exit 2 naming the field and line), ``rules`` (Prometheus rules from the config), ``report`` (SLA
compliance from Prometheus or a collector). Only this
module configures logging handlers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from spansignals import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _cmd_collector(args: argparse.Namespace) -> int:
    from spansignals.processors.collector.app import run

    return run(args.config, workers=args.workers)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from spansignals.processors.config import ConfigError, inactive_blocks, load_config
    from spansignals.processors.config._loader import compose_yaml

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    with open(args.file, encoding="utf-8") as fh:
        data, _ = compose_yaml(fh.read(), args.file)
    present = sorted(data) if isinstance(data, dict) else []
    print(f"{args.file}: valid")
    print(f"  service: {config.service.name or '(from OTEL_SERVICE_NAME / SDK default)'}")
    print(f"  blocks: {', '.join(present) or '(none: all defaults)'}")
    inactive = inactive_blocks(present)
    if inactive:
        print(f"  not active yet in this version (accepted, validated, no effect): {', '.join(inactive)}")
    return EXIT_OK


def _cmd_rules(args: argparse.Namespace) -> int:
    try:
        from spansignals.processors.rules import render_rules
    except ImportError:
        print("spansignals rules: not available in this version yet", file=sys.stderr)
        return EXIT_FAILURE
    from spansignals.processors.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(render_rules(config, header=[f"config: {args.config}"] if args.config else []))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from spansignals.processors.report import run_report

    return run_report(args)


# Later issues register more subcommands here: name -> (help, add_arguments, handler).
_EXTRA: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {}


def _alerts_arguments(parser: argparse.ArgumentParser) -> None:
    from spansignals._alerts_cli import add_arguments

    add_arguments(parser)


def _cmd_alerts(args: argparse.Namespace) -> int:
    from spansignals._alerts_cli import run

    return run(args)


_EXTRA["alerts"] = (
    "list, acknowledge and resolve alerts; manage silences and maintenance windows (management API)",
    _alerts_arguments,
    _cmd_alerts,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="spansignals",
        description="Cost, rate-limit, SLO and alert signals derived from OpenTelemetry spans.",
    )
    parser.add_argument("--version", action="version", version=f"spansignals {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("collector", help="run the collector processor (OTLP in, derived metrics out)")
    p.add_argument("--config", metavar="FILE", help="YAML config (default: the embedded default config)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes sharing the ports with SO_REUSEPORT (default: collector.workers, 1)",
    )
    p.set_defaults(func=_cmd_collector)

    p = sub.add_parser("check-config", help="validate a config file (exit 2 naming the field and line)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("rules", help="print Prometheus recording and alerting rules (YAML)")
    p.add_argument("--config", metavar="FILE", help="YAML config (default: SPANSIGNALS_CONFIG or defaults)")
    p.set_defaults(func=_cmd_rules)

    p = sub.add_parser("report", help="SLA compliance report (SLOs, error budgets, spend) for a period")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="read from a Prometheus server's HTTP API")
    source.add_argument("--collector", metavar="URL", help="a running collector's /metrics (since start)")
    p.add_argument("--config", metavar="FILE", help="YAML config naming the SLOs, objectives and budgets")
    p.add_argument("--period", default="30d", help="compliance period for --prometheus (default: 30d)")
    p.add_argument("--format", default="text", choices=["text", "json", "markdown"])
    p.set_defaults(func=_cmd_report)

    for name, (help_text, add_args, handler) in _EXTRA.items():
        p = sub.add_parser(name, help=help_text)
        add_args(p)
        p.set_defaults(func=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spansignals`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_OK
