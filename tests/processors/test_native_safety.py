"""Memory and reference safety of the native module (processors/_native.c).

The scanner reads request bytes from the network inside the collector, and RED's grouping runs
there and in the in-app worker thread: a read or write past an object, a use after free, or one
reference too many per call would crash or slowly leak the service. The equivalence tests
(collector/test_spanscan.py, test_red_grouping.py) check what it answers; these check that it
survives, and leaves nothing behind:

* callers that break its assumptions: a view class whose slots are another class's, or that is a
  C type underneath (dict); bounds that are not floats; Python code run in the middle of a call
  (weight_of, a weight's ``__eq__``, a name's ``__hash__``) that drops the views, rebinds their
  slots, changes the bounds or the groups being built, or calls it again with another class, in
  the same thread or in another. Those that crashed before the fixes run in a child process with
  PYTHONMALLOC=debug, which overwrites freed memory so that a use after free crashes instead of
  passing by luck (the child loads only the compiled module, so it starts in ~0.1 s);
* bodies that are empty, truncated, nested 5,000 deep, or that claim lengths past 2 GiB;
* loops over valid, bailing, failing and hostile inputs that must not grow traced memory, the
  number of objects the garbage collector tracks, the process's RSS, or the reference counts of the
  objects every view shares.

``scripts/native_sanitize.sh`` runs these and the equivalence tests under AddressSanitizer and
valgrind (minutes: not part of the default suite).
"""

from __future__ import annotations

import decimal
import gc
import os
import random
import subprocess
import sys
import textwrap
import tracemalloc
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from wire_format import length_delimited as _field
from wire_format import varint as _varint

from spansignals.processors import _native
from spansignals.processors.collector.spanscan import ScannedSpanView
from spansignals.processors.red import DEFAULT_BUCKETS_S, _group_in_python
from spansignals.processors.view import SpanView, _sampling_weight

_SLOTS = (
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "status_code",
    "resource",
    "service_name",
    "weight",
    "_body",
    "_span_start",
    "_span_end",
    "_decoded",
)
_LIMITS = (128, 1 << 20)
_BOUNDS = DEFAULT_BUCKETS_S


# --- encodings ------------------------------------------------------------------------------------


def _request(
    spans: int = 3, *, trace_state: str = "", name: str = "op", trace_id: bytes | None = None
) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    kv = resource_spans.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "svc"
    scope = resource_spans.scope_spans.add()
    for i in range(spans):
        span = scope.spans.add()
        span.trace_id = bytes(range(1, 17)) if trace_id is None or i < spans - 1 else trace_id
        span.span_id = bytes(range(1, 9))
        span.name = f"{name}{i % 4}"
        span.start_time_unix_nano, span.end_time_unix_nano = 1_000, 2_000 + i
        span.trace_state = trace_state
        attribute = span.attributes.add()
        attribute.key, attribute.value.int_value = "n", i
        attribute = span.attributes.add()
        attribute.key = "tags"
        attribute.value.array_value.values.add().string_value = "a"
        attribute.value.array_value.values.add().double_value = 0.5
    return request.SerializeToString()


def _span_with_attribute(attribute: bytes) -> bytes:
    """A valid ExportTraceServiceRequest with one span whose only attribute is ``attribute``."""
    span = (
        _field(1, bytes(range(1, 17)))
        + _field(2, bytes(range(1, 9)))
        + _field(5, b"op")
        + _field(9, attribute)
    )
    return _field(1, _field(2, _field(2, span)))


def _nested_array(depth: int) -> bytes:
    """An AnyValue that is an array holding an array ... ``depth`` deep."""
    value = _field(1, b"leaf")
    for _ in range(depth):
        value = _field(5, _field(1, value))
    return value


def _bucketed(values: list[float], bounds: tuple[float, ...] = _BOUNDS) -> tuple[Any, ...]:
    """What bucket_durations gives for a group of these values (record_many's reading of them)."""
    counts: dict[int, int] = {}
    for value in values:
        counts[bisect_left(bounds, value)] = counts.get(bisect_left(bounds, value), 0) + 1
    return (counts, len(values), sum(values), min(values), max(values))


def _reference(views: list[SpanView]) -> tuple[dict[Any, Any], list[SpanView]]:
    groups, weighted = _group_in_python(views)
    return {key: _bucketed(values) for key, values in groups.items()}, weighted


# --- callers that break its assumptions ------------------------------------------------------------


def _in_child(code: str) -> str:
    """Run ``code`` in a child process that has only this module loaded (as ``_native``) and the
    view classes ``View``/``Base`` and request ``BODY`` below; its stdout. The child's allocator
    is PYTHONMALLOC=debug unless the environment chose one (the sanitizer script does)."""
    prelude = f"""
import gc, sys, threading, importlib.util
spec = importlib.util.spec_from_file_location("spansignals.processors._native", {_native.__file__!r})
_native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(_native)
SLOTS = {_SLOTS!r}
class View:
    __slots__ = SLOTS
class Base:
    __slots__ = ("name", "kind", "start_ns", "end_ns", "status_code", "service_name", "weight")
BODY = bytes.fromhex({_request(3, trace_state="ot=th:8").hex()!r})
BOUNDS = {_BOUNDS!r}
"""
    env = {**os.environ}
    env.setdefault("PYTHONMALLOC", "debug")
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"the child died ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_scan_refuses_slots_taken_from_another_class() -> None:
    # A member descriptor can be set on any class; its offset is in its own class's layout, here
    # far past the end of Small's instances. scan() wrote there (heap overflow, a crash).
    out = _in_child(
        """
        class Big:
            __slots__ = tuple(f"pad{i}" for i in range(200)) + SLOTS
        class Small:
            __slots__ = ()
        for name in SLOTS:
            setattr(Small, name, Big.__dict__[name])
        try:
            _native.scan(BODY * 20, Small, 128, 1 << 20, lambda state: 1.0)
        except TypeError as exc:
            print("TypeError", exc)
        """
    )
    assert out.startswith("TypeError name of Small is not a plain object slot"), out


def test_bucket_durations_refuses_slots_taken_from_another_class() -> None:
    # The same with bucket_durations' base type: it read past the end of every view.
    out = _in_child(
        """
        class Big:
            __slots__ = tuple(f"pad{i}" for i in range(200)) + Base.__slots__
        class Foreign:
            __slots__ = ()
        for name in Base.__slots__:
            setattr(Foreign, name, Big.__dict__[name])
        try:
            _native.bucket_durations([Foreign() for _ in range(1000)], Foreign, BOUNDS)
        except TypeError as exc:
            print("TypeError", exc)
        """
    )
    assert out.startswith("TypeError name of Foreign is not a plain object slot"), out


class _DictView(dict[str, Any]):
    __slots__ = _SLOTS


class _PropertyName:
    __slots__ = _SLOTS


class _ScannedSubclass(ScannedSpanView):
    __slots__ = ("extra",)


def test_scan_refuses_view_classes_it_cannot_build() -> None:
    # A class over dict: scan() allocated it without dict's own initialisation, and the first
    # item set on such a view crashed.
    with pytest.raises(TypeError, match="written in Python over object"):
        _native.scan(_request(), _DictView, *_LIMITS, float)
    _PropertyName.name = property(lambda self: "x")  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="name is not a slot of _PropertyName"):
        _native.scan(_request(), _PropertyName, *_LIMITS, float)
    with pytest.raises(TypeError):
        _native.scan(_request(), int, *_LIMITS, float)
    with pytest.raises(TypeError):
        _native.bucket_durations([], int, _BOUNDS)
    # a Python subclass of the view class is fine, and its instances are what it returns
    views = _native.scan(_request(), _ScannedSubclass, *_LIMITS, float)
    assert views is not None and len(views) == 3
    assert all(type(view) is _ScannedSubclass for view in views)
    assert [view.end_ns for view in views] == [2_000, 2_001, 2_002]
    assert dict(views[1].attributes) == {"n": 1, "tags": ("a", 0.5)}


def test_views_dropped_by_weight_of_mid_scan() -> None:
    # Python code run by scan() (weight_of here; a finalizer the collector runs, in general) can
    # reach the list of views through the garbage collector and empty it. scan() then filled a
    # freed view.
    out = _in_child(
        """
        def weight_of(state):
            for held in gc.get_objects():
                if type(held) is list and held and type(held[0]) is View:
                    held.clear()
            return 2.0
        views = _native.scan(BODY, View, 128, 1 << 20, weight_of)
        print(len(views), gc.collect() >= 0)
        """
    )
    assert out.split() == ["0", "True"]  # each span's weight_of emptied the list, the last included


def test_scan_called_again_from_weight_of_with_another_view_class() -> None:
    # scan() with another class, run from the middle of a scan (re-entered here, from another
    # thread in general), replaced the cached slot offsets: the outer call then built views of
    # the other class and set their slots at this class's offsets (a crash).
    out = _in_child(
        """
        class Wide:
            __slots__ = tuple(f"pad{i}" for i in range(12)) + SLOTS
        def weight_of(state):
            assert _native.scan(BODY, Wide, 128, 1 << 20, lambda state: 1.0) is not None
            return 2.0
        views = _native.scan(BODY, View, 128, 1 << 20, weight_of)
        print(sorted({type(view).__name__ for view in views}), [view.weight for view in views])
        """
    )
    assert out.strip() == "['View'] [2.0, 2.0, 2.0]"


def test_bucket_durations_survives_views_list_emptied_mid_call() -> None:
    # bucket_durations walked the caller's list through a pointer taken before the loop; a
    # weight's __eq__ emptying that list freed it under the loop.
    out = _in_child(
        """
        views = []
        class Weight(float):
            __hash__ = float.__hash__
            def __eq__(self, other):
                views.clear()
                return float(self) == other
        for i in range(50):
            view = Base()
            view.name, view.kind, view.start_ns, view.end_ns = "op" * 40, 1, 0, 10 + i
            view.status_code, view.service_name, view.weight = 0, "svc" * 40, Weight(1.0)
            views.append(view)
        del view
        groups, weighted = _native.bucket_durations(views, Base, BOUNDS)
        print(sum(n for _, n, *_ in groups.values()), len(weighted))
        """
    )
    assert out.split() == ["1", "0"]


def test_bucket_durations_reads_slot_values_a_weight_rebinds() -> None:
    # A weight's __eq__ that rebinds the view's name freed the name bucket_durations was about to
    # put in the key. The key has the names read after the weight, as the Python loop reads them.
    out = _in_child(
        """
        class Weight(float):
            __hash__ = float.__hash__
            def __eq__(self, other):
                self.view.name = "rebound"
                self.view.service_name = "rebound"
                return float(self) == other
        views = []
        for i in range(20):
            view = Base()
            view.name, view.service_name = "".join(["op", str(i)] * 30), "".join(["s", str(i)] * 30)
            view.kind, view.start_ns, view.end_ns, view.status_code = 1, 0, 10, 0
            view.weight = Weight(1.0)
            view.weight.view = view
            views.append(view)
        del view
        groups, _ = _native.bucket_durations(views, Base, BOUNDS)
        print(groups)
        """
    )
    assert out.strip() == str({("rebound", "rebound", 1, 0): _bucketed([1e-08] * 20)})


def test_bucket_durations_holds_what_arithmetic_unbinds() -> None:
    # end - start on int subclasses: end.__sub__ unbinds start from the view and declines, so
    # Python goes on to start.__rsub__, which needs start alive.
    out = _in_child(
        """
        class End(int):
            def __sub__(self, other):
                self.view.start_ns = 0
                return NotImplemented
        class Start(int):
            def __rsub__(self, other):
                return int(other) - int(self)
        views = []
        for i in range(20):
            view = Base()
            view.name, view.service_name, view.kind, view.status_code, view.weight = "op", "svc", 1, 0, 1.0
            view.start_ns = Start(int("1" * 40) + i)
            view.end_ns = End(int("1" * 40) + 2 * i)
            view.end_ns.view = view
            views.append(view)
        del view
        groups, _ = _native.bucket_durations(views, Base, BOUNDS)
        print(groups)
        """
    )
    assert out.strip() == str({("svc", "op", 1, 0): _bucketed([i / 1e9 if i else 0.0 for i in range(20)])})


def test_bucket_durations_called_again_with_another_base_class() -> None:
    class Other:
        __slots__ = ("end_ns", "kind", "name", "service_name", "start_ns", "status_code", "weight")

    other = Other()
    for slot in Other.__slots__:
        setattr(other, slot, 5)
    setattr(other, "weight", 1.0)  # noqa: B010 - a slot mypy does not see

    class Weight(float):
        __hash__ = float.__hash__

        def __eq__(self, value: object) -> bool:
            assert _native.bucket_durations([other], Other, (1.0,)) is not None
            return float(self) == value

    views = [
        SpanView(f"op{i % 2}", 1, 0, 10 + i, 0, {}, {}, service_name="svc", weight=Weight(1.0))
        for i in range(6)
    ]
    assert _native.bucket_durations(views, SpanView, _BOUNDS) == _reference(views)


def test_bucket_durations_keeps_the_bounds_it_was_given() -> None:
    # The bounds are read once: a list emptied (or filled with non-floats) by a weight's __eq__
    # in the middle of the call changes nothing, and reads nothing freed.
    out = _in_child(
        """
        bounds = list(BOUNDS)
        class Weight(float):
            __hash__ = float.__hash__
            def __eq__(self, other):
                bounds.clear()
                bounds.extend(["x"] * 100)
                return float(self) == other
        def views(weight):
            made = []
            for i in range(30):
                view = Base()
                view.name, view.kind, view.start_ns, view.end_ns = f"op{i % 3}", 1, 0, 1_000_000 * i
                view.status_code, view.service_name, view.weight = 0, "svc", weight()
                made.append(view)
            return made
        changed = _native.bucket_durations(views(lambda: Weight(1.0)), Base, bounds)
        print(changed == _native.bucket_durations(views(lambda: 1.0), Base, BOUNDS), len(bounds))
        """
    )
    assert out.split() == ["True", "100"]


def test_bucket_durations_survives_a_hash_that_rebinds_the_slots() -> None:
    # A name's __hash__ runs while the key is looked up: it rebinds the view's name and service
    # (dropping the view's references to the objects in the key) and the key still holds them.
    # The group is the one the Python loop gives: its key is built before it is hashed.
    out = _in_child(
        """
        class Name(str):
            def __hash__(self):
                view, self.view = self.view, None
                if view is not None:  # the first hash of this name
                    view.name = "".join(["rebound", str(id(self))])
                    view.service_name = "".join(["gone", str(id(self))])
                return str.__hash__(self)
        views = []
        for i in range(40):
            view = Base()
            view.name = Name("".join(["op", str(i % 4)] * 20))
            view.name.view = view
            view.service_name = "".join(["svc"] * 30)
            view.kind, view.start_ns, view.end_ns, view.status_code, view.weight = 1, 0, 10 + i, 0, 1.0
            views.append(view)
        del view
        groups, weighted = _native.bucket_durations(views, Base, BOUNDS)
        print(sorted((key[1][:4], n) for key, (_, n, *_) in groups.items()), len(weighted))
        """
    )
    assert out.strip() == "[('op0o', 10), ('op1o', 10), ('op2o', 10), ('op3o', 10)] 0"


def test_bucket_durations_groups_changed_through_the_garbage_collector() -> None:
    # Python code run mid-call can find the dict of groups being built (gc.get_objects) and put
    # anything in it: a group index out of range would write outside the counts. It is refused.
    out = _in_child(
        """
        class Name(str):  # not an exact str: looked up in the dict at every view
            pass
        class Weight(float):
            __hash__ = float.__hash__
            def __eq__(self, other):
                for held in gc.get_objects():
                    if type(held) is dict and held and all(type(k) is tuple and len(k) == 4 for k in held):
                        for key in held:
                            held[key] = 10**6
                return float(self) == other
        views = []
        for i in range(10):
            view = Base()
            view.name, view.kind, view.start_ns, view.end_ns = Name("op"), 1, 0, 10 + i
            view.status_code, view.service_name, view.weight = 0, "svc", Weight(1.0)
            views.append(view)
        try:
            _native.bucket_durations(views, Base, BOUNDS)
        except RuntimeError as exc:
            print("RuntimeError", exc)
        """
    )
    assert out.startswith("RuntimeError bucket_durations' groups changed during the call"), out


def test_scan_and_grouping_in_threads_with_other_classes() -> None:
    # The collector's derivations and the in-app worker call these in two threads; a thread
    # switch inside a call (weight_of, a weight's __eq__) lets the other replace the caches.
    out = _in_child(
        """
        import time
        sys.setswitchinterval(1e-6)
        class Wide:
            __slots__ = tuple(f"pad{i}" for i in range(12)) + SLOTS
        class WideBase:
            __slots__ = ("pad",) + Base.__slots__
        class Weight(float):
            __hash__ = float.__hash__
            def __eq__(self, other):
                time.sleep(0)
                return float(self) == other
        def weight_of(state):
            time.sleep(0)
            return 2.0
        def grouping_views(cls):
            views = []
            for i in range(20):
                view = cls()
                view.name, view.kind, view.start_ns, view.end_ns = f"op{i % 3}", 1, 0, 10 + i
                view.status_code, view.service_name, view.weight = 0, "svc", Weight(1.0)
                views.append(view)
            return views
        failures = []
        def work(view_cls, base_cls):
            views = grouping_views(base_cls)
            expected = None
            for _ in range(300):
                scanned = _native.scan(BODY, view_cls, 128, 1 << 20, weight_of)
                if [type(v) for v in scanned] != [view_cls] * 3 or [v.weight for v in scanned] != [2.0] * 3:
                    failures.append(("scan", view_cls.__name__))
                grouped = _native.bucket_durations(views, base_cls, BOUNDS)
                expected = expected or grouped
                if grouped is None or grouped != expected:
                    failures.append(("group", base_cls.__name__, grouped))
        threads = [threading.Thread(target=work, args=pair) for pair in ((View, Base), (Wide, WideBase))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print("failures", len(failures), failures[:3])
        """
    )
    assert out.strip() == "failures 0 []"


def test_errors_of_weight_of_reach_the_caller() -> None:
    # scan() turns its own ValueErrors (text that is not UTF-8) into None, the Python path's turn;
    # a ValueError of weight_of was taken for one of those and lost.
    def weight_of(state: str) -> float:
        raise ValueError(f"bad state {state}")

    with pytest.raises(ValueError, match="bad state ot=th:8"):
        _native.scan(_request(trace_state="ot=th:8"), ScannedSpanView, *_LIMITS, weight_of)
    bad_name = _request(5, trace_state="ot=th:8").replace(b"op3", b"o\xff3")
    assert _native.scan(bad_name, ScannedSpanView, *_LIMITS, _sampling_weight) is None


# --- hostile bodies --------------------------------------------------------------------------------


def test_empty_body() -> None:
    assert _native.scan(b"", ScannedSpanView, *_LIMITS, float) == []
    assert _native.span_attributes(b"", 0, 0) == {}


@pytest.mark.parametrize("length", [2**31 - 1, 2**31, 2**32 + 1, 2**63, 2**64 - 1])
def test_lengths_past_the_body(length: int) -> None:
    # A length-delimited field that claims more bytes than there are, at every level.
    claim = _varint(length)
    for body in (
        b"\x0a" + claim + b"xyz",  # ExportTraceServiceRequest.resource_spans
        _field(1, b"\x12" + claim),  # ResourceSpans.scope_spans
        _field(1, _field(2, b"\x12" + claim)),  # ScopeSpans.spans
        _field(1, b"\x0a" + claim + b"\x00"),  # ResourceSpans.resource
    ):
        assert _native.scan(body, ScannedSpanView, *_LIMITS, float) is None
    # inside a span attribute: read (and checked) when a derivation asks for the attributes
    views = _native.scan(_span_with_attribute(b"\x12" + claim), ScannedSpanView, *_LIMITS, float)
    assert views is not None
    assert _native.span_attributes(views[0]._body, views[0]._span_start, views[0]._span_end) is None
    span = _field(9, b"\x12" + claim)
    assert _native.span_attributes(span, 0, len(span)) is None


def test_varints_too_long_or_cut() -> None:
    for tag in (b"\x8a" + b"\x80" * 9 + b"\x00", b"\x8a" * 11, b"\x8a", b"\x0a\xff\xff"):
        assert _native.scan(tag, ScannedSpanView, *_LIMITS, float) is None
        assert _native.span_attributes(tag, 0, len(tag)) is None


def test_every_truncation_of_a_valid_request() -> None:
    body = _request(4, trace_state="ot=th:8")
    for cut in range(len(body)):
        views = _native.scan(body[:cut], ScannedSpanView, *_LIMITS, float)
        for view in views or ():
            view.attributes  # noqa: B018 - decodes from the cut body
    span = body[-60:]
    for start in range(len(span)):
        for stop in range(start, len(span) + 1, 7):
            _native.span_attributes(span, start, stop)


def test_span_ranges_outside_the_body() -> None:
    body = _request()
    for start, stop in ((-1, 3), (5, 4), (0, len(body) + 1)):
        with pytest.raises(ValueError):
            _native.span_attributes(body, start, stop)
    with pytest.raises(OverflowError):
        _native.span_attributes(body, 0, 2**64)


def test_nesting_5000_deep() -> None:
    deep = _field(2, _nested_array(5_000))
    # as a resource attribute (checked while scanning) and as a span attribute (checked when read)
    resource = _field(1, _field(1, deep)) + _field(
        2, _field(2, _field(1, bytes(range(1, 17))) + _field(2, b"12345678"))
    )
    assert _native.scan(_field(1, resource), ScannedSpanView, *_LIMITS, float) is None
    assert _native.span_attributes(_field(9, deep), 0, len(_field(9, deep))) is None
    # while 10 deep is read as protobuf does
    shallow = _span_with_attribute(_field(1, b"k") + _field(2, _nested_array(10)))
    views = _native.scan(shallow, ScannedSpanView, *_LIMITS, float)
    assert views is not None
    value: Any = views[0].attributes["k"]
    for _ in range(10):
        (value,) = value
    assert value == "leaf"


# --- nothing left behind ---------------------------------------------------------------------------


def _mutants(body: bytes, count: int) -> list[bytes]:
    rng = random.Random(7)
    out = []
    for _ in range(count):
        mutant = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            mutant[rng.randrange(len(mutant))] = rng.randrange(256)
        out.append(bytes(mutant[: rng.randint(1, len(mutant))]) if rng.random() < 0.3 else bytes(mutant))
    return out


def _raising_weight(state: str) -> float:
    raise RuntimeError("weight_of failed")


class _OtherView:
    __slots__ = _SLOTS


class _NoSlots:
    __slots__ = ()


class _Name(str):
    """A name the identity cache does not take (only exact str): the key tuple's path."""

    __slots__ = ()


class _DecimalEnd(int):
    """An end whose elapsed time divides into a Decimal: a duration record_many would not bucket
    as a float, so bucket_durations answers None."""

    def __sub__(self, other: object) -> Any:
        return _Elapsed(int(self) - int(other))  # type: ignore[call-overload]


class _Elapsed(int):
    def __truediv__(self, other: object) -> Any:
        return decimal.Decimal(int(self)) / decimal.Decimal(str(other))


def _cases() -> dict[str, Callable[[], object]]:
    valid = _request(20, trace_state="ot=th:8")
    late_bail = _request(20, trace_id=bytes(16))  # the last span breaks a rule: 19 views built, then dropped
    bad_text = _request(5, name="op").replace(b"op3", b"o\xff3")  # not UTF-8: ValueError inside, None out
    merged_resource = _field(
        1, _field(1, _field(1, _field(1, b"k") + _field(2, b"\x08\x01") + _field(2, b"\x08\x02")))
    )
    span = _field(9, _field(1, b"k") + _field(2, _field(1, b"v")))
    merged_span = _field(9, _field(1, b"k") + _field(2, _field(1, b"a") + _field(1, b"b")))
    bad_key = _field(9, _field(1, b"\xff") + _field(2, b""))
    mutants = _mutants(valid, 64)
    cycle = iter(range(10**9))
    views = [
        SpanView(f"op{i % 3}", 1, 0, 10 + i, i % 2, {}, {}, weight=2.0 if i == 5 else 1.0) for i in range(20)
    ]
    unset = [*views, SpanView.__new__(SpanView)]
    unhashable = [SpanView(["op"], 1, 0, 10, 0, {}, {})]  # type: ignore[arg-type,unused-ignore]
    big = [SpanView("op", 1, -(2**70), 2**70 + i, 0, {}, {}) for i in range(5)]
    many = [SpanView(f"op{i}", 1, 0, 10 * i, 0, {}, {}) for i in range(200)]  # tables grow, 4 and 3 times
    subclassed = [
        SpanView(_Name(f"op{i % 3}"), 1, 0, 10 + i, 0, {}, {}) for i in range(20)
    ]  # no identity cache
    not_float = [*views[:3], SpanView("op", 1, 0, _DecimalEnd(10), 0, {}, {})]  # None after three views

    def bucket(batch: list[SpanView], bounds: Any = _BOUNDS) -> Callable[[], object]:
        return lambda: _native.bucket_durations(batch, SpanView, bounds)

    def scan(
        body: bytes, cls: type = ScannedSpanView, weight_of: Callable[[str], float] = _sampling_weight
    ) -> Callable[[], object]:
        return lambda: _native.scan(body, cls, *_LIMITS, weight_of)

    def raises(call: Callable[[], object], exc: type[BaseException]) -> Callable[[], object]:
        def run() -> None:
            try:
                call()
            except exc:
                return
            raise AssertionError("did not raise")

        return run

    def read_attributes() -> object:
        return [
            dict(view.attributes)
            for view in _native.scan(valid, ScannedSpanView, *_LIMITS, _sampling_weight) or ()
        ]

    return {
        "scan valid": scan(valid, weight_of=lambda state: 2.0),
        "scan and read attributes": read_attributes,
        "scan late bail": scan(late_bail),
        "scan text not UTF-8": scan(bad_text),
        "scan merged resource value": scan(merged_resource),
        "scan resource over the attribute limit": lambda: _native.scan(
            valid, ScannedSpanView, 0, 1 << 20, float
        ),
        "scan weight_of raises": raises(scan(valid, weight_of=_raising_weight), RuntimeError),
        "scan refused class": raises(scan(valid, _DictView), TypeError),
        "scan alternating classes": lambda: (scan(valid)(), scan(valid, _OtherView)()),
        "scan mutated bodies": lambda: scan(mutants[next(cycle) % len(mutants)])(),
        "span_attributes": lambda: _native.span_attributes(span, 0, len(span)),
        "span_attributes merged": lambda: _native.span_attributes(merged_span, 0, len(merged_span)),
        "span_attributes not UTF-8": raises(
            lambda: _native.span_attributes(bad_key, 0, len(bad_key)), ValueError
        ),
        "bucket_durations": bucket(views),
        "bucket_durations unset slot": bucket(unset),
        "bucket_durations unhashable": raises(bucket(unhashable), TypeError),
        "bucket_durations past 64 bits": bucket(big),
        "bucket_durations refused base": raises(
            lambda: _native.bucket_durations(views, _NoSlots, _BOUNDS), TypeError
        ),
        "bucket_durations bounds not floats": raises(bucket(views, (0.5, 1)), TypeError),
        "bucket_durations bounds not a sequence": raises(bucket(views, 0.5), TypeError),  # type: ignore[arg-type]
        "bucket_durations 2,000 bounds": bucket(views, tuple(float(i) / 1e9 for i in range(2_000))),
        "bucket_durations 200 groups": bucket(many),
        "bucket_durations names not exact str": bucket(subclassed),
        "bucket_durations duration not a float": bucket(not_float),
    }


_CASES = _cases()


@pytest.mark.parametrize("case", list(_CASES))
def test_calls_leave_nothing_behind(case: str) -> None:
    call = _CASES[case]
    rounds = 1_500
    for _ in range(300):  # the caches (texts, layouts) reach their steady state
        call()
    gc.collect()
    tracemalloc.start()
    try:
        objects_before = len(gc.get_objects())
        memory_before = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            call()
        gc.collect()
        memory_growth = tracemalloc.get_traced_memory()[0] - memory_before
        object_growth = len(gc.get_objects()) - objects_before
    finally:
        tracemalloc.stop()
    # one object of the smallest kind (16 bytes) kept per call would be 24,000 bytes
    assert memory_growth < 8_000, f"{case}: traced memory grew by {memory_growth} bytes in {rounds} calls"
    assert object_growth < 10, f"{case}: {object_growth} more tracked objects after {rounds} calls"


def test_shared_objects_hold_exactly_the_views_references() -> None:
    body = _request(20, trace_state="ot=th:8")
    late_bail = _request(20, trace_id=bytes(16))
    none_before, type_before = sys.getrefcount(None), sys.getrefcount(ScannedSpanView)
    body_before = sys.getrefcount(body)
    views = _native.scan(body, ScannedSpanView, *_LIMITS, _sampling_weight)
    assert views is not None and len(views) == 20
    # each view holds one reference to the body, the resource dict, the service name and its type
    assert sys.getrefcount(body) == body_before + 20
    resource = views[0].resource
    assert sys.getrefcount(resource) == 20 + 2  # + the local name + getrefcount's argument
    assert sys.getrefcount(ScannedSpanView) == type_before + 20
    for view in views:
        view.attributes  # noqa: B018 - decoded and cached in the view
    del views, view, resource
    assert sys.getrefcount(body) == body_before
    assert sys.getrefcount(ScannedSpanView) == type_before
    for _ in range(1_000):
        assert _native.scan(late_bail, ScannedSpanView, *_LIMITS, float) is None
        assert _native.span_attributes(body, 0, 0) == {}
    assert sys.getrefcount(late_bail) == 2
    assert sys.getrefcount(ScannedSpanView) == type_before
    assert abs(sys.getrefcount(None) - none_before) < 100  # a None kept per call would be 2,000+


def test_cached_texts_are_not_over_referenced() -> None:
    # Names and keys come from one shared str per text: a reference kept per use would never show
    # as memory (it is the same object), only in its count.
    body = _request(8, trace_state="ot=th:8")
    views = _native.scan(body, ScannedSpanView, *_LIMITS, _sampling_weight)
    assert views is not None
    name, service = views[0].name, views[0].service_name
    key = next(iter(views[0].attributes))
    resource_key = next(iter(views[0].resource))
    del views
    counts = [sys.getrefcount(text) for text in (name, key, resource_key, service)]
    for _ in range(1_000):
        views = _native.scan(body, ScannedSpanView, *_LIMITS, _sampling_weight)
        for view in views or ():
            view.attributes  # noqa: B018 - decodes the keys
    del views, view
    assert [sys.getrefcount(text) for text in (name, key, resource_key, service)] == counts


def test_bucket_durations_releases_what_its_tables_hold() -> None:
    # The identity cache holds the key objects of each entry, and each group its key, during the
    # call: all released at its end, whichever way it ends.
    views = [SpanView(f"op{i % 5}", i % 2, 0, 10 + i, 0, {}, {}, service_name="svc") for i in range(300)]
    shared = [views[0].service_name, *(view.name for view in views[:5]), views[0].kind, views[1].kind]
    counts = [sys.getrefcount(obj) for obj in shared]
    for _ in range(1_000):
        assert _native.bucket_durations(views, SpanView, _BOUNDS) is not None
        assert _native.bucket_durations([*views, object()], SpanView, _BOUNDS) is None
    assert [sys.getrefcount(obj) for obj in shared] == counts


@pytest.mark.skipif(
    bool(os.environ.get("SPANSIGNALS_SANITIZER")), reason="AddressSanitizer keeps freed memory in quarantine"
)
def test_rss_does_not_grow() -> None:
    # The same loops, without tracemalloc, on the process's resident memory: what a leak outside
    # Python's allocators (none expected) would show. 1 MiB of margin for the allocator's own moves;
    # the views of one call kept would add ~20 KiB a call, ~100 MiB over the loop.
    process = psutil.Process()
    calls = list(_CASES.values())
    for call in calls:
        for _ in range(300):
            call()
    gc.collect()
    rss_before = process.memory_info().rss
    for _ in range(5_000):
        for call in calls:
            call()
    gc.collect()
    growth = process.memory_info().rss - rss_before
    assert growth < 1 << 20, f"RSS grew by {growth} bytes"
