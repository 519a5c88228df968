"""Zero-code setup: ``opentelemetry-instrument python app.py`` with spansignals.

Two entry points (registered in ``pyproject.toml``):

- ``opentelemetry_configurator = spansignals`` → :class:`SpansignalsConfigurator`, which calls
  :func:`~spansignals.sdk.configure` (configuration from ``SPANSIGNALS_CONFIG``, everything else
  from the standard ``OTEL_*`` variables). It runs before instrumentors are loaded.
- ``opentelemetry_distro = spansignals`` → :class:`SpansignalsDistro`, whose ``load_instrumentor``
  skips httpx when ``configure()`` already instrumented it with our hooks, and otherwise passes
  our hooks to the httpx instrumentor (so another configurator still gets provider attributes and
  redaction). Other instrumentors load as usual.

When other distros or configurators are installed (``opentelemetry-distro``), the
auto-instrumentation picks the first one found: select ours with
``OTEL_PYTHON_DISTRO=spansignals OTEL_PYTHON_CONFIGURATOR=spansignals``.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

__all__ = ["SpansignalsConfigurator", "SpansignalsDistro"]

_logger = logging.getLogger(__name__)


class SpansignalsConfigurator(_BaseConfigurator):
    """Calls ``configure()`` when the auto-instrumentation starts."""

    def _configure(self, **kwargs: Any) -> None:
        from ._configure import configure

        try:
            configure()
        except Exception:
            # A broken config must not stop the app: it runs uninstrumented, and says why.
            _logger.exception("spansignals: configure() failed; the app runs without spansignals")


class SpansignalsDistro(BaseDistro):
    """Loads instrumentors, giving httpx spansignals' hooks (or skipping it when already done)."""

    def _configure(self, **kwargs: Any) -> None:
        """Nothing to set: ``configure()`` resolves every default itself."""

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name != "httpx":
            super().load_instrumentor(entry_point, **kwargs)
            return
        from . import _env
        from ._configure import active_telemetry
        from .httpx_hooks import HttpxHooks

        telemetry = active_telemetry()
        if telemetry is not None and telemetry.httpx_instrumented:
            return  # configure() already instrumented httpx with our hooks
        if not _env.env_flag(_env.SPANSIGNALS_INSTRUMENT_HTTPX, True):
            return
        hooks: HttpxHooks | None = telemetry.hooks if telemetry is not None else None
        if hooks is None:
            hooks = _hooks_from_config()
        instrumentor = entry_point.load()()
        instrumentor.instrument(**hooks.instrument_kwargs(), **kwargs)


def _hooks_from_config() -> Any:
    from spansignals.processors.config import load_config
    from spansignals.processors.providers import ProviderTable

    from .httpx_hooks import HttpxHooks

    try:
        table = ProviderTable.from_config(load_config(None).providers)
    except Exception:
        _logger.exception("spansignals: cannot load the configuration; using the built-in provider table")
        table = None
    return HttpxHooks(table)
