"""Which spans of an encoded trace request can hold a given attribute key, from the raw bytes.

Derivations ask :meth:`~spansignals.processors.view.OtlpAttributes.might_contain` before reading a
family of keys most spans lack (``usage.`` for token counts): answering no without indexing the
span's attributes is what keeps plain server spans cheap. Per span, that question used to cost a
serialization of the span (~0.7 µs with upb). The receivers hold the request's bytes, in which
every key is stored verbatim, so one C-level ``bytes.find`` over the whole body finds every
occurrence of a fragment (most requests of most services have none: then the answer is no for
all their spans at no per-span cost), and only then a walk of the wire format maps occurrences to
spans by their byte ranges.

The walk is written here by hand because upb, the protobuf runtime the receivers parse with,
exposes no byte offsets of sub-messages, and no protobuf library does. It reads only tags and
lengths down to ``ExportTraceServiceRequest.resource_spans[].scope_spans[].spans[]`` (fields 1, 2
and 2 of the OTLP trace proto) and skips everything else, so spans are numbered in the order the
parsed message yields them. Any inconsistency (a span count that differs from the parsed
message's, a truncated field, a group wire type) makes :class:`EncodedSpans` answer "maybe" for
every span, which only costs the slower per-span check, never a wrong "no".
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["EncodedSpans", "span_ranges"]


class _Malformed(Exception):
    pass


def _varint(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte ``first`` (continuation bit set) was at ``pos - 1``."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _Malformed


def _walk(buf: bytes, pos: int, end: int, depth: int, starts: list[int], ends: list[int]) -> None:
    # depth 0: ExportTraceServiceRequest (1: resource_spans), 1: ResourceSpans (2: scope_spans),
    # 2: ScopeSpans (2: spans).
    while pos < end:
        tag = buf[pos]
        pos += 1
        if tag & 0x80:
            tag, pos = _varint(buf, pos, tag)
        wire = tag & 7
        if wire == 2:
            length = buf[pos]
            pos += 1
            if length & 0x80:
                second = buf[pos]
                if second & 0x80:
                    length, pos = _varint(buf, pos, length)
                else:  # 128 to 16383 bytes, most spans: no call
                    length = (length & 0x7F) | (second << 7)
                    pos += 1
            stop = pos + length
            if stop > end:
                raise _Malformed
            field = tag >> 3
            if depth == 2:
                if field == 2:
                    starts.append(pos)
                    ends.append(stop)
            elif (field == 1) if depth == 0 else (field == 2):
                _walk(buf, pos, stop, depth + 1, starts, ends)
            pos = stop
        elif wire == 0:
            while buf[pos] & 0x80:
                pos += 1
            pos += 1
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:  # groups are not used by OTLP
            raise _Malformed
    if pos != end:
        raise _Malformed


def span_ranges(body: bytes) -> tuple[list[int], list[int]] | None:
    """``(starts, ends)``: the byte range of every span's encoding in ``body`` (an encoded
    ``ExportTraceServiceRequest``), in message order; ``None`` when the body cannot be walked."""
    starts: list[int] = []
    ends: list[int] = []
    try:
        _walk(body, 0, len(body), 0, starts, ends)
    except (_Malformed, IndexError):
        return None
    return starts, ends


class EncodedSpans:
    """Answers "can span ``index`` hold a key containing ``fragment``?" for one request.

    ``body`` is the encoding the request was parsed from and ``span_count`` the number of spans the
    parsed message holds (spans are numbered across the whole request in message order). Answers
    are computed once per fragment; a "no" is exact, a "yes" may come from a value.
    """

    __slots__ = ("_body", "_found", "_ranges", "_span_count", "_walked")

    def __init__(self, body: bytes, span_count: int) -> None:
        self._body = body
        self._span_count = span_count
        self._ranges: tuple[list[int], list[int]] | None = None
        self._walked = False
        self._found: dict[bytes, frozenset[int] | None] = {}

    def might_contain(self, index: int, fragment: bytes) -> bool:
        """False only when span ``index``'s encoding does not contain ``fragment``."""
        try:
            found = self._found[fragment]
        except KeyError:
            found = self._found[fragment] = self._spans_with(fragment)
        return found is None or index in found

    def _spans_with(self, fragment: bytes) -> frozenset[int] | None:
        body = self._body
        at = body.find(fragment)
        if at < 0:
            return frozenset()
        if not self._walked:
            self._walked = True
            ranges = span_ranges(body)
            if ranges is not None and len(ranges[0]) == self._span_count:
                self._ranges = ranges
        ranges = self._ranges
        if ranges is None:
            return None  # unsure about every span
        starts, ends = ranges
        found = set()
        width = len(fragment)
        while at >= 0:
            k = bisect_right(starts, at) - 1
            if k >= 0 and at + width <= ends[k]:
                found.add(k)
            at = body.find(fragment, at + 1)
        return frozenset(found)
