"""One YAML configuration for the app (``configure()``) and the collector.

Each top-level block has its own model module; :func:`load_config` validates the whole file once
and raises :class:`ConfigError` whose entries name the field path (``slos[2].objective``) and its
line. Unknown keys are errors. ``${ENV_VAR}`` is interpolated; secrets are ``SecretStr`` and never
printed. With no source, the file named by ``SPANSIGNALS_CONFIG`` is used, else the defaults
(which are the embedded collector config of DESIGN.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

from pydantic import Field, ValidationError, field_validator

from . import alerts as _alerts
from . import collector as _collector
from . import pricing as _pricing
from . import ratelimits as _ratelimits
from . import service as _service
from . import slos as _slos
from ._loader import ConfigError, compose_yaml, format_path, line_for
from ._types import StrictModel
from .alerts import AlertsConfig
from .collector import CollectorConfig
from .pricing import BudgetConfig, PricingConfig
from .ratelimits import RateLimitsConfig
from .service import ProviderConfig, RedConfig, ServiceConfig
from .slos import SloConfig

__all__ = [
    "ENV_CONFIG",
    "ConfigError",
    "SpansignalsConfig",
    "inactive_blocks",
    "load_config",
]

ENV_CONFIG = "SPANSIGNALS_CONFIG"
"""Environment variable naming the config file used when none is passed."""


class SpansignalsConfig(StrictModel):
    """The whole file. Every block is optional; see each block's model for its defaults."""

    service: ServiceConfig = Field(default_factory=ServiceConfig)
    red: RedConfig = Field(default_factory=RedConfig)
    providers: list[ProviderConfig] = Field(default_factory=list)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    ratelimits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    slos: list[SloConfig] = Field(default_factory=list)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    collector: CollectorConfig = Field(default_factory=CollectorConfig)

    @field_validator("slos")
    @classmethod
    def _unique_slo_names(cls, slos: list[SloConfig]) -> list[SloConfig]:
        names = [s.name for s in slos]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"SLO names must be unique (they label every SLO series), repeated: {repeated}")
        return slos


# Which module decides whether a block's feature is built (``ACTIVE``), for check-config.
_BLOCK_MODULES = {
    "service": _service,
    "red": _service,
    "providers": _service,
    "pricing": _pricing,
    "budgets": _pricing,
    "ratelimits": _ratelimits,
    "slos": _slos,
    "alerts": _alerts,
    "collector": _collector,
}


def inactive_blocks(data_keys: set[str] | list[str]) -> list[str]:
    """Top-level blocks present in a file whose feature is not built yet ("not active yet")."""
    return [k for k in data_keys if k in _BLOCK_MODULES and not getattr(_BLOCK_MODULES[k], "ACTIVE", True)]


def _validate(data: Any, lines: Mapping[tuple[Any, ...], int], source: str) -> SpansignalsConfig:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            [("(top level)", lines.get((), 1), "expected a mapping of blocks (service, providers, …)")],
            source,
        )
    try:
        return SpansignalsConfig.model_validate(data)
    except ValidationError as exc:
        errors: list[tuple[str, int | None, str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if err["type"] not in ("missing", "extra_forbidden") and "input" in err and not _secret_path(loc):
                shown = repr(err["input"])
                if len(shown) <= 60 and "got" not in msg:
                    msg = f"{msg}, got {shown}"
            errors.append((format_path(loc), line_for(lines, loc), msg))
        raise ConfigError(errors, source) from None


def _secret_path(loc: tuple[Any, ...]) -> bool:
    """Never echo values of fields that may hold secrets."""
    text = ".".join(str(p) for p in loc).lower()
    return any(w in text for w in ("secret", "password", "token", "key", "webhook_url", "headers"))


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | SpansignalsConfig | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> SpansignalsConfig:
    """Load and validate a configuration.

    ``source`` is a path to a YAML file, a mapping (already parsed), a ready config, or ``None``
    (the file named by ``SPANSIGNALS_CONFIG``, else the defaults). Raises :class:`ConfigError`.
    """
    if isinstance(source, SpansignalsConfig):
        return source
    environ = os.environ if env is None else env
    if source is None:
        path = environ.get(ENV_CONFIG)
        if not path:
            return SpansignalsConfig()
        source = path
    if isinstance(source, Mapping):
        return _validate(source, {}, "config")
    path_str = os.fspath(source)
    try:
        text = FsPath(path_str).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [("(file)", None, f"cannot read {path_str}: {exc.strerror or exc}")], path_str
        ) from None
    return loads_config(text, source=path_str, env=environ)


def loads_config(
    text: str, *, source: str = "config", env: Mapping[str, str] | None = None
) -> SpansignalsConfig:
    """Validate YAML text (see :func:`load_config`)."""
    data, lines = compose_yaml(text, source, env)
    return _validate(data, lines, source)
