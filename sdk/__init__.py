"""In-app front door: ``configure()`` installs spansignals into the app's OpenTelemetry setup.

>>> from spansignals.sdk import configure
>>> telemetry = configure("spansignals.yaml")   # or configure() from OTEL_* / SPANSIGNALS_* alone
>>> ...                                         # every httpx client is instrumented
>>> telemetry.shutdown(timeout=5)               # flushes within its timeout

See :func:`configure` for the settings and their environment variables,
:class:`RecordAllSampler` for how derived signals stay exact while traces are sampled, and
:mod:`spansignals.sdk.httpx_hooks` for the enricher extension point.
"""

from ._configure import active_telemetry, configure
from ._instrument import instrument_client
from ._telemetry import Telemetry
from .guard import RequestBlocked, guard
from .httpx_hooks import HttpxEnricher, HttpxHooks, observe_response_body, register_enricher_factory
from .sampling import RecordAllSampler

__all__ = [
    "HttpxEnricher",
    "HttpxHooks",
    "RecordAllSampler",
    "RequestBlocked",
    "Telemetry",
    "active_telemetry",
    "configure",
    "guard",
    "instrument_client",
    "observe_response_body",
    "register_enricher_factory",
]
