"""The collector's fast span path: span views built in C straight from the received bytes.

Why native code: with upb, the protobuf runtime the receivers parse with, every field read from
Python builds a wrapper object. Reading the ten fields the pipeline validates and derives from,
and building each span's view, was the largest share of the collector's CPU per span after the
derivations themselves; no protobuf library exposes a cheaper way to get a few fields of every
span, so :file:`processors/_native.c` walks the OTLP wire format by hand. It is small on purpose:

* It runs only on bytes known to be a request upb accepts (well-formed protobuf, valid UTF-8):
  bytes upb has parsed, or bytes :file:`processors/_wirecheck.c` checked without building a
  message (:func:`count_unparsed`, what the receivers use; it is stricter than upb, and when it is
  not sure upb parses as before). And only when no stage rewrites spans (redaction takes the
  Python path).
* :func:`scan_views` returns views only when every span and resource passes the rules of
  :mod:`.validation` and the encoding is one whose meaning it reads exactly as upb does. Anything
  else (a rule broken, a resource attribute that protobuf would read by merging, a wire type it
  does not expect, nesting deeper than 32) gives ``None``, and the pipeline takes the Python path,
  which names the rules broken and is the reference the tests compare this one against.
* Span attributes are decoded only when a derivation reads them (:class:`ScannedSpanView`), into a
  plain ``dict`` whose values are what :func:`~spansignals.processors.view.any_value_to_python`
  gives; their encoding is checked then too, so spans no derivation reads (most server spans) cost
  nothing for it. A span whose attributes protobuf would read by merging is decoded by upb
  instead. Resource attributes are decoded once per ``ResourceSpans``. The length rule is checked
  while scanning, and, as on the Python path, only when the body is longer than the limit.

The extension is built by ``pip install`` (setuptools, a C compiler and the Python headers). When it
is missing, :data:`NATIVE` is false, :func:`scan_views` always answers ``None`` and the collector
says at start that it runs the Python span path.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from ..view import SpanView, _sampling_weight, any_value_to_python

try:
    from .. import _native
except ImportError:  # built without a C compiler: the Python path does everything
    _native = None  # type: ignore[assignment]
try:
    from .. import _wirecheck
except ImportError:  # the same: every request is parsed with upb first
    _wirecheck = None  # type: ignore[assignment]

__all__ = ["NATIVE", "WIRECHECK", "ScannedBatch", "ScannedSpanView", "count_unparsed", "scan_views"]

NATIVE: bool = _native is not None
"""Whether the native scanner was built and imported."""
WIRECHECK: bool = NATIVE and _wirecheck is not None
"""Whether requests can be scanned without parsing them with upb first (:func:`count_unparsed`)."""


class ScannedSpanView(SpanView):
    """A view the native scanner built; its attributes are decoded from the request on first use.

    The scanner fills every slot itself (no ``__init__`` runs); ``_body[_span_start:_span_end]``
    is the span's encoding.
    """

    __slots__ = ("_body", "_decoded", "_span_end", "_span_start")

    _body: bytes
    _decoded: dict[str, Any] | None
    _span_start: int
    _span_end: int

    @property
    def attributes(self) -> Mapping[str, Any]:  # type: ignore[override]  # read-only, built on first use
        decoded = self._decoded
        if decoded is None:
            assert _native is not None  # only the scanner builds these views
            decoded = _native.span_attributes(self._body, self._span_start, self._span_end)
            if decoded is None:  # an encoding protobuf reads by merging: let upb read it
                decoded = _attributes_with_upb(self._body[self._span_start : self._span_end])
            self._decoded = decoded
        return decoded

    def might_hold_key(self, fragment: bytes) -> bool:
        # Keys are stored verbatim inside the span's encoding: a miss is exact, a hit may be a value.
        return self._body.find(fragment, self._span_start, self._span_end) >= 0


def _attributes_with_upb(encoding: bytes) -> dict[str, Any]:
    """A span's attributes as the Python path reads them (last duplicate key wins)."""
    span = Span()
    span.ParseFromString(encoding)
    return {kv.key: any_value_to_python(kv.value) for kv in span.attributes}


class ScannedBatch(list[SpanView]):
    """The views of one scanned request, in the order of their encodings in ``body``."""

    __slots__ = ("_body",)

    def __init__(self, views: list[SpanView], body: bytes) -> None:
        super().__init__(views)
        self._body = body

    def select_might_hold(self, fragment: bytes) -> list[SpanView]:
        """The views whose encoding contains ``fragment`` (see
        :func:`~spansignals.processors.view.views_that_might_hold`): one search of the request
        instead of one per span; most requests hold no ``usage.`` at all."""
        body = self._body
        at = body.find(fragment)
        if at < 0:
            return []
        views: list[ScannedSpanView] = self  # type: ignore[assignment]  # the scanner builds only these
        starts = [view._span_start for view in views]
        width = len(fragment)
        selected: list[SpanView] = []
        last = -1
        while at >= 0:
            k = bisect_right(starts, at) - 1
            if k > last and at + width <= views[k]._span_end:
                view = views[k]
                selected.append(view)
                last = k
                at = body.find(fragment, view._span_end)  # the span's other hits change nothing
            else:
                at = body.find(fragment, at + 1)
        return selected


def scan_views(
    body: bytes,
    max_attributes: int,
    max_value_bytes: int,
    weight_of: Callable[[str], float] = _sampling_weight,
) -> ScannedBatch | None:
    """Views of every span of the encoded ``ExportTraceServiceRequest`` ``body``, in message order,
    or ``None`` when the request needs the Python path (see the module docstring).

    ``body`` should be bytes upb parsed without error; on others (text that is not UTF-8, say) the
    answer is ``None`` too. Raises only on an internal error (memory) or an error of ``weight_of``.
    """
    if _native is None:
        return None
    views = _native.scan(body, ScannedSpanView, max_attributes, max_value_bytes, weight_of)
    return None if views is None else ScannedBatch(views, body)


def count_unparsed(body: bytes) -> int | None:
    """The number of spans of ``body``, bytes nobody has parsed, when ``processors/_wirecheck.c``
    finds it to be a request upb accepts; ``None`` when it is not sure (it is stricter than upb),
    or without the native modules: the caller then parses with upb, which decides. Once counted,
    ``body`` may go to :func:`scan_views` as it is. Skipping upb's parse is the point: it built
    a whole message that nothing read on the fast path."""
    if _wirecheck is None or _native is None:
        return None
    return _wirecheck.trace_spans(body)
