"""The span view: the one read-only shape every derivation is written against.

Two adapters build it: :func:`view_from_readable_span` (an SDK ``ReadableSpan`` at ``on_end``)
and :func:`view_from_otlp_span` (a protobuf ``Span`` from an OTLP request, plus its resource).
Derivations never see either source type, so each is written once and runs the same in the app
and in the collector.

Kinds and status codes use the OTLP numbering (``SPAN_KIND_SERVER`` = 2, ``STATUS_CODE_ERROR`` = 2)
whatever the source, because that is what the spanmetrics-compatible labels are named after.

OTLP attributes are indexed lazily (:class:`OtlpAttributes`): a derivation that asks for one key
pays for building a ``key -> KeyValue`` dict once per span, and only the values it reads are
converted to Python objects (``KeyValue.value`` included: with upb every sub-message read builds a
wrapper object, so indexing values up front cost ~0.6 µs more per span of four attributes). Plain
server spans that no derivation inspects stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "KIND_NAMES",
    "STATUS_NAMES",
    "OtlpAttributes",
    "OtlpSpanView",
    "SpanView",
    "any_value_to_python",
    "view_from_otlp_span",
    "view_from_readable_span",
    "views_that_might_hold",
]

# OTLP enum numbering. Index = enum value.
KIND_NAMES: tuple[str, ...] = (
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
)
STATUS_NAMES: tuple[str, ...] = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")

KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = range(6)
STATUS_UNSET, STATUS_OK, STATUS_ERROR = range(3)

_EMPTY: Mapping[str, Any] = {}


class SpanView:
    """A finished span as derivations see it.

    ``attributes`` and ``resource`` are read-only mappings of attribute key to Python value
    (str, bool, int, float, bytes or a tuple of those). ``kind`` and ``status_code`` are OTLP enum
    integers (see :data:`KIND_NAMES`, :data:`STATUS_NAMES`). ``weight`` is the number of spans
    this one stands for (1.0 unless a sampling threshold says otherwise).
    """

    __slots__ = (
        "attributes",
        "end_ns",
        "kind",
        "name",
        "resource",
        "service_name",
        "start_ns",
        "status_code",
        "weight",
    )

    def __init__(
        self,
        name: str,
        kind: int,
        start_ns: int,
        end_ns: int,
        status_code: int,
        attributes: Mapping[str, Any],
        resource: Mapping[str, Any],
        *,
        service_name: str | None = None,
        weight: float = 1.0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.status_code = status_code
        self.attributes = attributes
        self.resource = resource
        if service_name is None:
            raw = resource.get("service.name")
            service_name = raw if isinstance(raw, str) and raw else "unknown_service"
        self.service_name = service_name
        self.weight = weight

    @property
    def duration_s(self) -> float:
        """Duration in seconds; 0.0 when the clock went backwards."""
        d = self.end_ns - self.start_ns
        return d / 1e9 if d > 0 else 0.0

    @property
    def kind_name(self) -> str:
        """The spanmetrics label value, e.g. ``SPAN_KIND_CLIENT``."""
        k = self.kind
        return KIND_NAMES[k] if 0 <= k < 6 else KIND_NAMES[0]

    @property
    def status_name(self) -> str:
        """The spanmetrics label value, e.g. ``STATUS_CODE_ERROR``."""
        s = self.status_code
        return STATUS_NAMES[s] if 0 <= s < 3 else STATUS_NAMES[0]

    def might_hold_key(self, fragment: bytes) -> bool:
        """False only when no attribute key of this span contains ``fragment`` (UTF-8); True when
        unsure. Derivations that read a family of keys most spans lack (``usage.``) ask first: on
        OTLP spans the answer comes without indexing the attributes (see :class:`OtlpAttributes`);
        the SDK's attribute dicts are cheap to look up, so their views just say "maybe"."""
        attrs = self.attributes
        return attrs.might_contain(fragment) if type(attrs) is OtlpAttributes else True

    def __repr__(self) -> str:
        return f"SpanView(name={self.name!r}, kind={self.kind_name}, service={self.service_name!r})"


def views_that_might_hold(views: Sequence[SpanView], fragment: bytes) -> Sequence[SpanView]:
    """The views of ``views`` whose :meth:`SpanView.might_hold_key` answer for ``fragment`` is
    true, in order. A batch that knows its encoding (the collector's scanned requests have a
    ``select_might_hold`` method) answers with one search of the request's bytes; otherwise each
    view is asked."""
    select = getattr(views, "select_might_hold", None)
    if select is not None:
        selected: Sequence[SpanView] = select(fragment)
        return selected
    return [view for view in views if view.might_hold_key(fragment)]


# --- SDK adapter -------------------------------------------------------------------------------

# opentelemetry.trace.SpanKind values: INTERNAL=0 SERVER=1 CLIENT=2 PRODUCER=3 CONSUMER=4.
_SDK_KIND_TO_OTLP = (KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER)
# opentelemetry.trace.StatusCode values: UNSET=0 OK=1 ERROR=2, the same as OTLP.


def _plain_mapping(attributes: Any) -> Mapping[str, Any]:
    """The ``dict`` inside the SDK's ``BoundedAttributes`` (frozen once a span has ended).

    ``BoundedAttributes.get`` is Python-level: a missing key costs ~0.4 µs against ~0.03 µs on a
    dict, and derivations mostly ask for keys a span does not have. Reading ``_dict`` is the one
    SDK internal used here (a test pins it); anything else is copied into a dict once.
    """
    if attributes is None:
        return _EMPTY
    inner = getattr(attributes, "_dict", None)
    if type(inner) is dict:
        return inner
    return attributes if type(attributes) is dict else dict(attributes)


def view_from_readable_span(span: Any, service_name: str | None = None) -> SpanView:
    """Build a view of an SDK ``ReadableSpan`` without copying its attributes.

    ``service_name`` may be passed when the caller already knows it (it is the same for every span
    of a provider), saving a resource lookup per span.
    """
    # ``_value_`` is the Enum member's plain attribute (``.value`` is a slower descriptor).
    kind = span.kind._value_
    status = span.status.status_code._value_
    resource = span.resource
    end = span.end_time
    start = span.start_time
    return SpanView(
        span.name,
        _SDK_KIND_TO_OTLP[kind] if 0 <= kind < 5 else KIND_UNSPECIFIED,
        start if start is not None else 0,
        end if end is not None else 0,
        status,
        _plain_mapping(getattr(span, "_attributes", None)),
        _plain_mapping(resource.attributes) if resource is not None else _EMPTY,
        service_name=service_name,
    )


# --- OTLP adapter ------------------------------------------------------------------------------


_SCALAR_TYPES = frozenset((str, int, float, bool, bytes))
_ARRAY_CACHE_MAX = 4096
_ARRAY_CACHE_KEY_MAX = 256
_array_cache: dict[bytes, tuple[Any, ...]] = {}


def any_value_to_python(value: Any) -> Any:
    """Convert an OTLP ``AnyValue`` to the Python value the SDK would hold.

    Arrays become tuples; key-value lists become dicts; an empty ``AnyValue`` becomes ``None``.
    Small arrays of scalars (captured HTTP headers: ``("100",)``) are looked up by their encoding
    in a bounded cache: with upb, walking an array costs ~2 µs per value (a wrapper per element),
    encoding it ~0.4 µs; the tuples are immutable, so sharing them is safe.
    """
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "bytes_value":
        return value.bytes_value
    if which == "array_value":
        encoded = value.SerializePartialToString()
        cached = _array_cache.get(encoded)
        if cached is not None:
            return cached
        result = tuple([any_value_to_python(v) for v in value.array_value.values])
        if len(encoded) <= _ARRAY_CACHE_KEY_MAX and all(type(v) in _SCALAR_TYPES for v in result):
            if len(_array_cache) >= _ARRAY_CACHE_MAX:
                _array_cache.clear()  # values are few in practice; a flood of distinct ones just resets
            _array_cache[encoded] = result
        return result
    if which == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    return None


class OtlpAttributes(Mapping[str, Any]):
    """A read-only mapping over a protobuf ``repeated KeyValue``, indexed on first use.

    Duplicate keys resolve to the last occurrence (what a dict built from the list would give).
    ``message`` is the protobuf message that owns ``kvs`` (the span): with it,
    :meth:`might_contain` can rule keys out from the message's encoding without indexing.
    """

    __slots__ = ("_encoded", "_index", "_kvs", "_message")

    def __init__(self, kvs: Sequence[Any], message: Any = None) -> None:
        self._kvs = kvs
        self._index: dict[str, Any] | None = None
        self._message = message
        self._encoded: bytes | None = None

    def might_contain(self, fragment: bytes) -> bool:
        """False only when no attribute key contains ``fragment`` (UTF-8); True when unsure.

        A derivation that reads a family of keys sharing a fragment (``usage.``) asks this first
        (through :meth:`SpanView.might_hold_key`), since most spans have none of those keys:
        searching the owning message's encoding (~0.7 µs, cached per span) is cheaper than indexing
        the attributes (~1.6 µs for four, since upb builds a wrapper per ``KeyValue``). Keys are
        stored verbatim in the encoding, so a miss is exact; a hit may come from a value or the span
        name (the caller then looks the keys up).
        """
        if self._index is not None:
            return True
        if self._message is None:
            return True
        encoded = self._encoded
        if encoded is None:
            encoded = self._encoded = self._message.SerializePartialToString()
        return fragment in encoded

    def _ensure(self) -> dict[str, Any]:
        index = self._index
        if index is None:
            index = self._index = {kv.key: kv for kv in self._kvs}
        return index

    def __getitem__(self, key: str) -> Any:
        return any_value_to_python(self._ensure()[key].value)

    def get(self, key: str, default: Any = None) -> Any:
        # The hot call of every derivation (several misses per span): one frame, one dict lookup.
        index = self._index
        if index is None:
            index = self._index = {kv.key: kv for kv in self._kvs}
        raw = index.get(key)
        if raw is None:
            return default
        return any_value_to_python(raw.value)

    def __contains__(self, key: object) -> bool:
        index = self._index
        if index is None:
            index = self._index = {kv.key: kv for kv in self._kvs}
        return key in index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ensure())

    def __len__(self) -> int:
        return len(self._ensure())

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` (e.g. ``http.response.header.``), without converting values."""
        return [k for k in self._ensure() if k.startswith(prefix)]


class OtlpSpanView(SpanView):
    """A view of a protobuf span whose attribute mapping is built on first use.

    Most spans a collector derives from are plain server spans that RED counts without reading an
    attribute and that the cost derivation rules out through :meth:`might_hold_key`. With ``hint``
    (:class:`~spansignals.processors.collector.span_offsets.EncodedSpans`, the span being number
    ``position`` of its request) that answer comes from the request's received bytes, for every
    span at once; without it, from the span's own encoding. Building an :class:`OtlpAttributes`
    for every span anyway, and freeing it, cost about a tenth of the collector's span path; here it
    happens only for spans a derivation reads attributes of. The base class's ``__init__`` is not
    called: its keyword handling is a cost on that path, and every slot is set here.
    """

    __slots__ = ("_attributes", "_hint", "_kvs", "_position", "_span")

    def __init__(
        self,
        name: str,
        kind: int,
        start_ns: int,
        end_ns: int,
        status_code: int,
        kvs: Sequence[Any],
        span: Any,
        hint: Any,
        position: int,
        resource: Mapping[str, Any],
        service_name: str,
        weight: float,
    ) -> None:
        self.name = name
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.status_code = status_code
        self._kvs = kvs
        self._span = span
        self._hint = hint
        self._position = position
        self._attributes: OtlpAttributes | None = None
        self.resource = resource
        self.service_name = service_name
        self.weight = weight

    @property
    def attributes(self) -> OtlpAttributes:  # type: ignore[override]  # read-only, built on first use
        attrs = self._attributes
        if attrs is None:
            attrs = self._attributes = OtlpAttributes(self._kvs, self._span)
        return attrs

    def might_hold_key(self, fragment: bytes) -> bool:
        hint = self._hint
        if hint is not None:
            return hint.might_contain(self._position, fragment)
        return self.attributes.might_contain(fragment)


def _sampling_weight(trace_state: str) -> float:
    """The adjusted count from an OTel ``th`` sampling threshold in the W3C tracestate, else 1.0.

    Per the OTel probability-sampling spec, ``ot=th:T`` with T a hex threshold of up to 14 digits
    (right-padded with zeros) means spans are kept with probability ``1 - T / 2**56``; each kept
    span stands for ``1 / p`` spans.
    """
    if "ot=" not in trace_state:
        return 1.0
    for member in trace_state.split(","):
        key, _, value = member.strip().partition("=")
        if key != "ot":
            continue
        for field in value.split(";"):
            fkey, _, fval = field.partition(":")
            if fkey != "th" or not fval or len(fval) > 14:
                continue
            try:
                threshold = int(fval.ljust(14, "0"), 16)
            except ValueError:
                return 1.0
            keep = 1.0 - threshold / float(1 << 56)
            return 1.0 / keep if keep > 0 else 1.0
    return 1.0


def view_from_otlp_span(
    span: Any, resource: Mapping[str, Any], service_name: str, hint: Any = None, position: int = 0
) -> OtlpSpanView:
    """Build a view of a protobuf ``opentelemetry.proto.trace.v1.Span``.

    ``resource`` is the (shared, already indexed) resource attribute mapping of the enclosing
    ``ResourceSpans`` and ``service_name`` its ``service.name``, resolved once per resource;
    ``hint`` and ``position`` as for :class:`OtlpSpanView` (the collector's pipeline builds its
    views directly, from the fields it has read to validate the span).
    """
    trace_state = span.trace_state
    return OtlpSpanView(
        span.name,
        span.kind,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        span.status.code,
        span.attributes,
        span,
        hint,
        position,
        resource,
        service_name,
        _sampling_weight(trace_state) if trace_state else 1.0,
    )
