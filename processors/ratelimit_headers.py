"""Rate-limit response headers of every known dialect, parsed into one shape.

Providers report quotas in incompatible ways; :func:`parse_rate_limit_headers` turns each into
:class:`RateLimitHeaders`: per *resource* (``requests``, ``tokens``, ``input_tokens``, a GitHub
resource such as ``core`` or ``search``, an IETF quota unit) a :class:`QuotaReading` with the
limit, the remaining quota and the **absolute** reset instant (epoch seconds), plus an absolute
``Retry-After`` instant. Absolute instants let a gauge report "seconds to reset" at collection time.

The provider's dialect (see :mod:`spansignals.processors.providers`) chooses a table of header
rows; every dialect also reads ``Retry-After`` (seconds or HTTP date; also ``retry-after-ms``) and
the IETF draft fields (``RateLimit-Policy`` + ``RateLimit`` structured fields, draft-07's
dictionary form, and the older ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset``).

============  ======================================================================================
dialect       headers (reset format)
============  ======================================================================================
openai        ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (Go durations: ``6m0s``, ``20ms``)
anthropic     ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
              (RFC 3339)
github        ``x-ratelimit-{limit,remaining,used,reset,resource}`` (epoch seconds)
generic       ``x-ratelimit-{limit,remaining,reset}`` (reset: delta seconds, or epoch when > 1e9)
gemini, ietf  nothing beyond the common fields
============  ======================================================================================

Headers are read from span attributes ``http.response.header.<lowercase-name>`` (the semantic
conventions' form: a list of strings; a plain string is accepted too), so the same code serves
in-app spans and spans from any language arriving at the collector. Parsing is tolerant: garbage
never raises, it increments :attr:`RateLimitHeaders.failures` and the field is skipped.

The span path uses :func:`header_readings`: only the dialect's header attributes are read, into a
:class:`HeaderReadings` with relative resets kept as offsets to the response time.
"""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._ietf_ratelimit import LIMIT as _I_LIMIT
from ._ietf_ratelimit import OFFSET as _I_OFFSET
from ._ietf_ratelimit import REMAINING as _I_REMAINING
from ._ietf_ratelimit import RESET as _I_RESET
from ._ietf_ratelimit import parse_ietf_fields

__all__ = [
    "ATTR_HEADER_PREFIX",
    "CAPTURED_HEADERS",
    "HeaderReadings",
    "QuotaReading",
    "RateLimitHeaders",
    "header_attributes",
    "header_readings",
    "header_value",
    "parse_rate_limit_headers",
]

ATTR_HEADER_PREFIX = "http.response.header."
_EPOCH_THRESHOLD = 1e9  # a "reset" above this is a Unix time, below it a delta (GitLab, Discord)
_MAX_RESOURCE_LEN = 32

_LIMIT, _REMAINING, _RESET, _USED = "limit", "remaining", "reset", "used"


@dataclass(slots=True)
class QuotaReading:
    """One quota as the provider reported it: ``reset_at`` is epoch seconds (``None`` if not sent)."""

    resource: str
    limit: float | None = None
    remaining: float | None = None
    reset_at: float | None = None

    @property
    def exhausted(self) -> bool:
        """Whether the provider said no quota is left."""
        return self.remaining is not None and self.remaining <= 0

    @property
    def utilization(self) -> float | None:
        """Used fraction of the limit, ``(limit - remaining) / limit``, or ``None`` when unknown."""
        if self.limit is None or self.remaining is None or self.limit <= 0:
            return None
        return min(1.0, max(0.0, (self.limit - self.remaining) / self.limit))


@dataclass(slots=True)
class RateLimitHeaders:
    """Everything the rate-limit headers of one response said."""

    readings: dict[str, QuotaReading] = field(default_factory=dict)
    retry_after_at: float | None = None
    failures: int = 0

    @property
    def found(self) -> bool:
        """Whether any rate-limit information was present."""
        return bool(self.readings) or self.retry_after_at is not None

    def reading(self, resource: str) -> QuotaReading:
        """The reading for ``resource``, created empty on first use."""
        r = self.readings.get(resource)
        if r is None:
            r = self.readings[resource] = QuotaReading(resource)
        return r

    def exhausted_until(self) -> float | None:
        """The latest instant until which the headers say calls will fail (exhausted quota or
        ``Retry-After``), or ``None``."""
        until = self.retry_after_at
        for r in self.readings.values():
            if r.exhausted and r.reset_at is not None and (until is None or r.reset_at > until):
                until = r.reset_at
        return until

    def is_throttled(self, status_code: int | None) -> bool:
        """429 always; 403 when quota is exhausted or ``Retry-After`` is given (GitHub's convention)."""
        if status_code == 429:
            return True
        if status_code == 403:
            return self.retry_after_at is not None or any(r.exhausted for r in self.readings.values())
        return False


# --- value parsers: text -> number, or an instant as (value, is_offset) -------------------------
#
# No parser sees the response time: an instant is absolute epoch seconds (a date, an epoch reset)
# or an offset to the response time (a duration, delta seconds), said by ``is_offset``. So the
# parse of a set of header values holds for every response carrying them (see HeaderReadings).

_INF = float("inf")

_Instant = tuple[float, bool]  # (epoch seconds, or seconds after the response when the flag is set)


def _count(text: str) -> float | None:
    v = float(text)  # float() skips surrounding whitespace itself
    return v if v >= 0 and v == v and v != _INF else None


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_GO_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


_CACHED = 1024  # parsed texts kept per parser: header values repeat across responses


@functools.lru_cache(maxsize=_CACHED)  # reset texts repeat ("1s", "6m0s"): parse each once
def _go_duration_s(text: str) -> float | None:
    """``6m0s``, ``1s``, ``20ms``, ``1h2m3.5s``, or a bare number of seconds."""
    t = text.strip()
    try:
        return _count(t)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(t):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _GO_UNIT_S[m.group(2)]
        pos = m.end()
    return total if pos == len(t) and t else None


def _reset_duration(text: str) -> _Instant | None:
    d = _go_duration_s(text)
    return None if d is None else (d, True)


@functools.lru_cache(maxsize=_CACHED)  # Anthropic's reset instants repeat across calls: parse each once
def _reset_rfc3339(text: str) -> _Instant:
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp(), False


def _reset_epoch(text: str) -> _Instant | None:
    v = _count(text)
    return None if v is None else (v, False)


def _reset_auto(text: str) -> _Instant | None:
    v = _count(text)
    if v is None:
        return None
    return v, v <= _EPOCH_THRESHOLD


def _retry_after(text: str) -> _Instant | None:
    t = text.strip()
    try:
        v = _count(t)
        return None if v is None else (v, True)
    except ValueError:
        dt = email.utils.parsedate_to_datetime(t)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp(), False


def _retry_after_ms(text: str) -> _Instant | None:
    v = _count(text)
    return None if v is None else (v / 1000.0, True)


# --- dialect tables -----------------------------------------------------------------------------

_Parser = Callable[[str], Any]  # a count parser (float) or an instant parser (_Instant)


@dataclass(frozen=True, slots=True)
class _Row:
    header: str
    resource: str | None  # None: taken from the dialect's resource header (GitHub)
    kind: str
    parse: _Parser
    attr: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr", ATTR_HEADER_PREFIX + self.header)


def _openai_rows() -> tuple[_Row, ...]:
    rows = []
    for res in ("requests", "tokens"):
        rows += [
            _Row(f"x-ratelimit-limit-{res}", res, _LIMIT, _count),
            _Row(f"x-ratelimit-remaining-{res}", res, _REMAINING, _count),
            _Row(f"x-ratelimit-reset-{res}", res, _RESET, _reset_duration),
        ]
    return tuple(rows)


def _anthropic_rows() -> tuple[_Row, ...]:
    rows = []
    for res in ("requests", "tokens", "input-tokens", "output-tokens"):
        label = res.replace("-", "_")
        rows += [
            _Row(f"anthropic-ratelimit-{res}-limit", label, _LIMIT, _count),
            _Row(f"anthropic-ratelimit-{res}-remaining", label, _REMAINING, _count),
            _Row(f"anthropic-ratelimit-{res}-reset", label, _RESET, _reset_rfc3339),
        ]
    return tuple(rows)


_GITHUB_ROWS = (
    _Row("x-ratelimit-limit", None, _LIMIT, _count),
    _Row("x-ratelimit-remaining", None, _REMAINING, _count),
    _Row("x-ratelimit-used", None, _USED, _count),
    _Row("x-ratelimit-reset", None, _RESET, _reset_epoch),
)
_GENERIC_ROWS = (
    _Row("x-ratelimit-limit", "requests", _LIMIT, _count),
    _Row("x-ratelimit-remaining", "requests", _REMAINING, _count),
    _Row("x-ratelimit-reset", "requests", _RESET, _reset_auto),
)
# The IETF draft's older separate fields (drafts -00 to -06; GitLab still sends them).
_IETF_LEGACY_ROWS = (
    _Row("ratelimit-limit", "requests", _LIMIT, _count),
    _Row("ratelimit-remaining", "requests", _REMAINING, _count),
    _Row("ratelimit-reset", "requests", _RESET, _reset_auto),
)
_GITHUB_RESOURCE_ATTR = ATTR_HEADER_PREFIX + "x-ratelimit-resource"
_RETRY_AFTER_ATTR = ATTR_HEADER_PREFIX + "retry-after"
_RETRY_AFTER_MS_ATTR = ATTR_HEADER_PREFIX + "retry-after-ms"
_RATELIMIT_ATTR = ATTR_HEADER_PREFIX + "ratelimit"
_POLICY_ATTR = ATTR_HEADER_PREFIX + "ratelimit-policy"

_DIALECT_ROWS: dict[str, tuple[_Row, ...]] = {
    "openai": _openai_rows() + _IETF_LEGACY_ROWS,
    "anthropic": _anthropic_rows() + _IETF_LEGACY_ROWS,
    "github": _GITHUB_ROWS + _IETF_LEGACY_ROWS,
    "generic": _GENERIC_ROWS + _IETF_LEGACY_ROWS,
    "gemini": _IETF_LEGACY_ROWS,
    "ietf": _IETF_LEGACY_ROWS,
}

# What the parser reads beyond the dialect's rows (every dialect).
_EXTRA_ATTRS = (_GITHUB_RESOURCE_ATTR, _RETRY_AFTER_ATTR, _RETRY_AFTER_MS_ATTR, _RATELIMIT_ATTR, _POLICY_ATTR)
_PROBE_SETS: dict[str, frozenset[str]] = {
    dialect: frozenset((*(row.attr for row in rows), *_EXTRA_ATTRS))
    for dialect, rows in _DIALECT_ROWS.items()
}
# The span path reads a dialect's attributes in the table's order, so when two rows give the same
# field (x-ratelimit-remaining-requests and the IETF ratelimit-remaining) the later row wins,
# whatever order the span's attributes came in.
_PROBE_KEYS: dict[str, tuple[str, ...]] = {
    dialect: (*(row.attr for row in rows), *_EXTRA_ATTRS) for dialect, rows in _DIALECT_ROWS.items()
}
_TABLE_ORDER: dict[str, dict[str, int]] = {
    dialect: {attr: i for i, attr in enumerate(keys)} for dialect, keys in _PROBE_KEYS.items()
}
# Per dialect, attribute -> (resource, kind, parse): the row fields the parse loop reads.
_FIELDS_BY_ATTR: dict[str, dict[str, tuple[str | None, str, _Parser]]] = {
    dialect: {row.attr: (row.resource, row.kind, row.parse) for row in rows}
    for dialect, rows in _DIALECT_ROWS.items()
}

CAPTURED_HEADERS: frozenset[str] = frozenset(
    {row.header for rows in _DIALECT_ROWS.values() for row in rows}
    | {"x-ratelimit-resource", "retry-after", "retry-after-ms", "ratelimit", "ratelimit-policy"}
)
"""Every response header name (lower-case) any dialect reads: what the httpx hooks capture."""


def header_value(value: Any) -> str | None:
    """The text of a captured header attribute: the first string of a list, a plain string, or a
    number's text; ``None`` otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple | list):
        if not value:
            return None
        first = value[0]
        if len(value) > 1 and all(isinstance(v, str) for v in value):
            return ", ".join(value)  # repeated header lines fold into one list-valued field
        return first if isinstance(first, str) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


_NOT_LABEL = re.compile(r"[^a-z0-9_]+")


@functools.lru_cache(maxsize=_CACHED)  # resource texts repeat ("core", "search"): clean each once
def _resource_label(text: str) -> str:
    """A low-cardinality resource label from provider text: lower-case ``[a-z0-9_]``, capped."""
    out = _NOT_LABEL.sub("_", text.strip().lower()).strip("_")
    return out[:_MAX_RESOURCE_LEN] or "default"


# --- entry point --------------------------------------------------------------------------------


def header_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``http.response.header.*`` attributes of a span as a small plain dict (often empty).

    One pass over the keys (or the OTLP view's own prefix index) instead of a lookup per table
    row: an SDK span's attribute mapping pays for an exception on every missing key.
    """
    keys_with_prefix = getattr(attrs, "keys_with_prefix", None)
    if keys_with_prefix is not None:
        keys = keys_with_prefix(ATTR_HEADER_PREFIX)
    else:
        keys = [k for k in attrs if k.startswith(ATTR_HEADER_PREFIX)]
    return {k: attrs[k] for k in keys} if keys else {}


def parse_rate_limit_headers(attrs: Mapping[str, Any], dialect: str, now: float) -> RateLimitHeaders:
    """Rate-limit information in the captured-header attributes ``attrs`` of one response.

    ``dialect`` picks the header table (unknown dialects are read as ``generic``); relative resets
    are taken from ``now`` (epoch seconds: the response time, i.e. the span's end). Never raises;
    with no ``http.response.header.*`` attribute it returns at once.
    """
    try:
        headers = header_attributes(attrs)
    except Exception:
        return RateLimitHeaders(failures=1)
    return _compile(headers, dialect).at(now) if headers else RateLimitHeaders()


# --- one parse, whatever the response time --------------------------------------------------------

Quota = tuple[str, float | None, float | None, float | None, bool]
"""``(resource, limit, remaining, reset, reset_is_offset)``: ``reset`` is epoch seconds, or seconds
after the response when ``reset_is_offset`` (Go durations, delta seconds, the IETF ``t``)."""


@dataclass(slots=True)
class HeaderReadings:
    """What one set of rate-limit header values says, whatever the time of the response.

    Relative instants are kept as offsets to the response time (no parser sees it), so the span
    path turns them into instants at the span's end without building a :class:`RateLimitHeaders`;
    ``at(now)`` gives the one a response at ``now`` has.
    """

    quotas: tuple[Quota, ...]
    retry_after: tuple[_Instant, ...]  # per Retry-After field: one may be a date, the other an offset
    failures: int

    def retry_after_at(self, now: float) -> float | None:
        """The latest ``Retry-After`` instant for a response at ``now``, or ``None``."""
        at = None
        for value, is_offset in self.retry_after:
            v = now + value if is_offset else value
            if at is None or v > at:
                at = v
        return at

    def at(self, now: float) -> RateLimitHeaders:
        """The readings of a response at ``now`` (epoch seconds), as fresh mutable objects."""
        readings = {
            resource: QuotaReading(
                resource, limit, remaining, now + reset if is_offset and reset is not None else reset
            )
            for resource, limit, remaining, reset, is_offset in self.quotas
        }
        return RateLimitHeaders(readings, self.retry_after_at(now), self.failures)


class _Drafts:
    """The resources read so far and the values that failed, as :func:`parse_ietf_fields` sees them."""

    __slots__ = ("failures", "readings")

    def __init__(self, readings: dict[str, list[Any]]) -> None:
        self.readings = readings
        self.failures = 0

    def reading(self, resource: str) -> list[Any]:
        d = self.readings.get(resource)
        if d is None:
            d = self.readings[resource] = [None, None, None, False]
        return d


_RETRY_PARSERS = ((_RETRY_AFTER_ATTR, _retry_after), (_RETRY_AFTER_MS_ATTR, _retry_after_ms))


def _compile(attrs: Mapping[str, Any], dialect: str) -> HeaderReadings:
    """Read the header attributes ``attrs`` (only the ``dialect``'s and the common ones count) in
    one pass. Never raises: a value that does not parse is counted and skipped."""
    readings: dict[str, list[Any]] = {}
    failures = 0
    table = _FIELDS_BY_ATTR.get(dialect) or _FIELDS_BY_ATTR["generic"]
    github_resource: str | None = None
    used: tuple[list[Any], float] | None = None
    for attr, raw in attrs.items():
        fields = table.get(attr)
        if fields is None:
            continue
        try:
            if type(raw) is tuple and len(raw) == 1 and type(raw[0]) is str:
                text: str | None = raw[0]  # the usual captured form, read without the general path
            else:
                text = header_value(raw)
            if text is None:
                raise ValueError("not a string")
            resource, kind, parse = fields
            value = parse(text)
            if value is None:
                raise ValueError("out of range")
            if resource is None:
                if github_resource is None:
                    github_resource = _resource_label(
                        header_value(attrs.get(_GITHUB_RESOURCE_ATTR)) or "core"
                    )
                resource = github_resource
            draft = readings.get(resource)
            if draft is None:
                draft = readings[resource] = [None, None, None, False]
            if kind == _REMAINING:
                draft[_I_REMAINING] = value
            elif kind == _LIMIT:
                draft[_I_LIMIT] = value
            elif kind == _RESET:
                draft[_I_RESET], draft[_I_OFFSET] = value
            else:
                used = (draft, value)
        except Exception:
            failures += 1
    if used is not None:
        draft, value = used
        if draft[_I_REMAINING] is None and draft[_I_LIMIT] is not None:
            draft[_I_REMAINING] = max(0.0, draft[_I_LIMIT] - value)
    retry: list[_Instant] = []
    for attr, parse in _RETRY_PARSERS:
        raw = attrs.get(attr)
        if raw is None:
            continue
        try:
            text = header_value(raw)
            at = parse(text) if text is not None else None
            if at is None:
                raise ValueError("bad retry-after")
            retry.append(at)
        except Exception:
            failures += 1
    if _RATELIMIT_ATTR in attrs or _POLICY_ATTR in attrs:
        drafts = _Drafts(readings)
        try:
            parse_ietf_fields(
                header_value(attrs.get(_POLICY_ATTR)),
                header_value(attrs.get(_RATELIMIT_ATTR)),
                drafts,
                _resource_label,
            )
        except Exception:
            drafts.failures += 1
        failures += drafts.failures
    quotas = tuple([(r, *d) for r, d in readings.items()])
    return HeaderReadings(quotas, tuple(retry) if retry else (), failures)


# --- the span path ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read one set of a dialect's header attributes when each value is one plain number,
    duration or date per row (no GitHub resource, ``used``, ``Retry-After`` or IETF field).

    Spans from one instrumentation carry the same headers response after response, so the table
    work of :func:`_compile` (row lookups, the per-resource drafts, the kind dispatch) is done once
    per set of keys; a span then only reads and parses its values into a flat list of
    :data:`~._ietf_ratelimit.LIMIT`-ordered fields per resource. Rows that give the same field
    keep the table's order, so the later row still wins.
    """

    counts: tuple[tuple[str, int], ...]  # (attribute, index in the flat list): parsed as _count
    instants: tuple[tuple[str, int, _Parser], ...]  # resets: the parser gives (value, is_offset)
    resources: tuple[str, ...]  # in the order _compile first reads them (the table's)
    blank: tuple[Any, ...]  # the flat list's start: (None, None, None, False) per resource


_PLAN_MAX = 256  # sets of header keys seen per dialect; a flood of distinct ones just resets
_PLANS: dict[str, dict[frozenset[str], _Plan | None]] = {dialect: {} for dialect in _DIALECT_ROWS}
_NO_PLAN: Any = object()  # not looked at yet (None: no plan, read with _compile)


def _plan(dialect: str, found: frozenset[str]) -> _Plan | None:
    """The plan for the header keys ``found`` (a dialect's), or ``None`` when one of them needs
    :func:`_compile` (a GitHub resource row, ``used``, ``Retry-After``, the IETF fields)."""
    order = _TABLE_ORDER[dialect]
    fields = _FIELDS_BY_ATTR[dialect]
    resources: list[str] = []
    counts: list[tuple[str, int]] = []
    instants: list[tuple[str, int, _Parser]] = []
    for attr in sorted(found, key=order.__getitem__):
        row = fields.get(attr)
        if row is None:
            return None
        resource, kind, parse = row
        if resource is None or kind == _USED:
            return None
        if resource not in resources:
            resources.append(resource)
        base = 4 * resources.index(resource)
        if kind == _RESET:
            instants.append((attr, base + _I_RESET, parse))
        elif parse is _count:  # inlined by _read_planned
            counts.append((attr, base + (_I_LIMIT if kind == _LIMIT else _I_REMAINING)))
        else:
            return None
    return _Plan(tuple(counts), tuple(instants), tuple(resources), (None, None, None, False) * len(resources))


# Count texts already parsed: float() of a header's text costs ~0.2 µs here, a dict lookup ~0.02 µs.
# Limits repeat on every response and a remaining count within its window; a count never seen
# before costs ~0.05 µs more (the miss and the insert).
_COUNTS: dict[object, float] = {}  # str keys; looked up with whatever a value's first item is
_CACHED_COUNTS = 4096


def _read_planned(plan: _Plan, get: Callable[[str], Any]) -> HeaderReadings | None:
    """The readings of ``plan``'s headers, or ``None`` when a value is not a plain one that parses
    (the caller then reads them with :func:`_compile`, which counts the failure)."""
    values = list(plan.blank)
    counts = _COUNTS
    try:
        for attr, index in plan.counts:
            raw = get(attr)
            # the captured form (one string in a tuple) without a call; header_value otherwise
            text = raw[0] if type(raw) is tuple and len(raw) == 1 else header_value(raw)
            value = counts.get(text)
            if value is None:
                if type(text) is not str:
                    return None
                value = float(text)  # what _count does, without its call
                if not 0 <= value < _INF:  # negative, infinite or NaN
                    return None
                if len(counts) >= _CACHED_COUNTS:
                    counts.clear()
                counts[text] = value
            values[index] = value
        for attr, index, parse in plan.instants:
            raw = get(attr)
            text = raw[0] if type(raw) is tuple and len(raw) == 1 else header_value(raw)
            if type(text) is not str:
                return None
            instant = parse(text)
            if instant is None:
                return None
            values[index], values[index + 1] = instant
    except Exception:  # a value the parser rejects: _compile counts it
        return None
    resources = plan.resources
    if len(resources) == 1:
        return HeaderReadings(((resources[0], *values),), (), 0)
    return HeaderReadings(tuple([(r, *values[4 * i : 4 * i + 4]) for i, r in enumerate(resources)]), (), 0)


def header_readings(attrs: Mapping[str, Any], dialect: str) -> HeaderReadings | None:
    """The rate-limit headers ``dialect`` reads on a span, parsed; ``None`` when it has none.

    The span path's entry point: the dialect's header attributes are found with one C-level set
    intersection over the span's keys (an SDK dict, a plain dict from OTLP or an OTLP view alike:
    an OTLP view pays one ``__iter__`` call, then ~0.5-1 µs per value it converts), and only those
    are read, in the dialect table's order. The table work per set of keys is done once
    (:class:`_Plan`); values that are not plain, and the GitHub, ``Retry-After`` and IETF forms,
    go through :func:`_compile`.
    Not cached per set of values: providers report a remaining count (and OpenAI a reset) that
    changes with nearly every response, and a cache keyed by the values made never-repeating
    headers 1.3-1.6x slower to derive (its misses: key, insert, evictions, objects kept alive).
    Only single texts are: a count's (:data:`_COUNTS`) and a duration's or date's (the parsers').
    """
    probe = _PROBE_SETS.get(dialect)
    if probe is None:
        dialect = "generic"
        probe = _PROBE_SETS[dialect]
    found = probe.intersection(attrs)
    if not found:
        return None  # the usual case: one C-level pass over the span's keys
    plans = _PLANS[dialect]
    plan = plans.get(found, _NO_PLAN)
    if plan is _NO_PLAN:
        if len(plans) >= _PLAN_MAX:
            plans.clear()
        plan = plans[found] = _plan(dialect, found)
    get = attrs.get
    if plan is not None:
        readings = _read_planned(plan, get)
        if readings is not None:
            return readings
    keys = sorted(found, key=_TABLE_ORDER[dialect].__getitem__) if len(found) > 1 else found
    if type(attrs) is dict:  # an SDK span holds no None value; a plain dict may: it is left out
        return _compile({key: value for key in keys if (value := get(key)) is not None}, dialect)
    # An OTLP view's empty value reads as None and is counted as a failure.
    return _compile({key: get(key) for key in keys}, dialect)
