"""spansignals: cost, rate-limit, SLO and alert signals derived from OpenTelemetry spans.

``spansignals.sdk`` runs inside an app (``configure()``, ``guard()``); ``spansignals.processors``
is the signal engine and the collector service; ``spansignals.cli`` is the command line.
"""

from __future__ import annotations

__all__ = ["__version__"]


def _read_version() -> str:
    try:
        from importlib.metadata import version

        return version("spansignals")
    except Exception:  # running from a source tree without an install
        return "0+unknown"


__version__ = _read_version()
