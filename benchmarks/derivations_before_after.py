"""Derivation cost per span at an earlier commit and now, interleaved in one run.

Run:  python benchmarks/derivations_before_after.py --before COMMIT [--rounds 15] [--n 5000]

The derivation modules (``--modules``, default: providers, ratelimit_headers, ratelimit, breaker,
slo, cost) are read from ``COMMIT`` with ``git show`` into a temporary directory, their relative
imports pointed at each other (old with old) and at today's package for everything else (so list
the modules that import a compared one too: ``ratelimit_headers`` alone would be measured through
today's ``ratelimit``, which imports today's headers module). Then
``observe`` of the cost, rate-limit and SLO derivations, built from the DESIGN example config the
way the factory builds them, is timed old and new alternately on prebuilt views of the span kinds
of ``inapp_span_cost.py`` (plain server span, SaaS client span with rate-limit headers, LLM client
span with usage and headers, the 8-attribute LLM client span). Reported: minimum and median per
call over ``--rounds`` rounds of ``--n`` calls, and new / old.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inapp_span_cost as spans

from spansignals.processors import cost as new_cost
from spansignals.processors import providers as new_providers
from spansignals.processors import ratelimit as new_ratelimit
from spansignals.processors import slo as new_slo
from spansignals.processors.budgets import BudgetTracker
from spansignals.processors.pricing import PriceCatalog

DEFAULT_MODULES = "providers,ratelimit_headers,ratelimit,breaker,slo,cost"
VIEWS = {
    "server": (spans._SERVER,),
    "saas-client": (spans._SAAS,),
    "llm-usage": (spans._LLM,),
    "llm-client": spans.SPAN_MIXES["llm-client"],
}


def _load_old(commit: str, names: list[str], into: Path) -> dict[str, ModuleType]:
    """Each module as of ``commit``, importable as ``old_<name>``."""
    for name in names:
        text = subprocess.run(
            ["git", "show", f"{commit}:processors/{name}.py"],
            cwd=spans.ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

        def point(m: re.Match[str]) -> str:
            mod = m.group(1)
            return f"from old_{mod} import" if mod in names else f"from spansignals.processors.{mod} import"

        (into / f"old_{name}.py").write_text(re.sub(r"from \.([A-Za-z_.]+) import", point, text))
    sys.path.insert(0, str(into))
    loaded = {}
    for name in names:
        spec = importlib.util.spec_from_file_location(f"old_{name}", into / f"old_{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"old_{name}"] = module
        spec.loader.exec_module(module)
        loaded[name] = module
    return loaded


def _derivations(
    cfg: Any, cost: ModuleType, ratelimit: ModuleType, slo: ModuleType, providers: ModuleType
) -> dict[str, Any]:
    """The three derivations as ``build_engine`` makes them, from the given modules."""

    def table() -> Any:
        return providers.ProviderTable.from_config(cfg.providers)

    return {
        "cost": cost.CostSpanProcessor(
            PriceCatalog(cfg.pricing.models, cfg.pricing.apis),
            budgets=BudgetTracker(cfg.budgets) if cfg.budgets else None,
            table=table(),
        ),
        "ratelimit": ratelimit.RateLimitSpanProcessor(
            cfg.ratelimits, providers=table(), service_name=cfg.service.name
        ),
        "slo": slo.SloSpanProcessor(cfg.slos, maintenance=cfg.alerts.maintenance, providers=table()),
    }


def _time(observe: Callable[[Any], None], view: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        observe(view)
    return (time.perf_counter() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--before", required=True, help="commit to compare with (e.g. a hash)")
    parser.add_argument("--modules", default=DEFAULT_MODULES, help=f"default: {DEFAULT_MODULES}")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=5000, help="calls per round and variant")
    args = parser.parse_args(argv)

    cfg = spans._config(str(spans.DEFAULT_CONFIG))
    with tempfile.TemporaryDirectory() as tmp:
        old = _load_old(args.before, args.modules.split(","), Path(tmp))

        def pick(name: str, new: ModuleType) -> ModuleType:
            return old.get(name, new)

        before = _derivations(
            cfg,
            pick("cost", new_cost),
            pick("ratelimit", new_ratelimit),
            pick("slo", new_slo),
            pick("providers", new_providers),
        )
        after = _derivations(cfg, new_cost, new_ratelimit, new_slo, new_providers)
        engines = spans.SignalEngine(list(before.values())), spans.SignalEngine(list(after.values()))
        spans._await_prices(*engines)
        print(f"before: {args.before} ({args.modules}); after: working tree")
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"  {'derivation':<11}{'span':<13}{'before min':>11}{'after min':>10}{'ratio':>8}"
            f"{'before med':>11}{'after med':>10}{'ratio':>8}  (µs per span)"
        )
        for name in before:
            for label, specs in VIEWS.items():
                view = spans._ended_views(specs)[0]
                variants = {"before": before[name].observe, "after": after[name].observe}
                for observe in variants.values():
                    _time(observe, view, args.n // 10)
                times: dict[str, list[float]] = {k: [] for k in variants}
                for i in range(args.rounds):
                    order = list(variants) if i % 2 == 0 else list(reversed(variants))
                    for key in order:
                        times[key].append(_time(variants[key], view, args.n))
                b_min, a_min = min(times["before"]), min(times["after"])
                b_med, a_med = statistics.median(times["before"]), statistics.median(times["after"])
                print(
                    f"  {name:<11}{label:<13}{b_min:>11.2f}{a_min:>10.2f}{a_min / b_min:>7.2f}x"
                    f"{b_med:>11.2f}{a_med:>10.2f}{a_med / b_med:>7.2f}x"
                )
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
