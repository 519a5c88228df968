"""The OTLP gRPC receiver: raw-bytes TraceService/Export and its status codes."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from otlp_builders import SPAN_KIND_SERVER, build_request

from spansignals.processors.collector import Collector, OtlpGrpcReceiver, TracePipeline
from spansignals.processors.collector.endpoints import Endpoint, ListenError
from spansignals.processors.engine import SignalEngine

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


async def test_export_with_the_generated_stub(collector: Collector) -> None:
    """The official generated client stub gets an empty response and the spans are derived."""
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        stub = TraceServiceStub(channel)
        response = await stub.Export(build_request("grpc-svc", [("op", SPAN_KIND_SERVER, 0)] * 5))
    assert isinstance(response, ExportTraceServiceResponse)
    assert collector.pipeline.receiver_spans.value(("grpc", "accepted")) == 5


async def test_gzip_compressed_call(collector: Collector) -> None:
    """A gzip-compressed gRPC call is accepted."""
    async with grpc.aio.insecure_channel(
        str(collector.grpc_endpoint), compression=grpc.Compression.Gzip
    ) as ch:
        await TraceServiceStub(ch).Export(build_request(spans=[("op", SPAN_KIND_SERVER, 0)] * 2))
    assert collector.pipeline.receiver_spans.value(("grpc", "accepted")) == 2


async def test_malformed_protobuf_is_invalid_argument(collector: Collector) -> None:
    """Bytes that are not a request get INVALID_ARGUMENT with a clear message; nothing is counted."""
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await export(b"\xff\xff\xff\xff")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf" in (info.value.details() or "")
    assert collector.pipeline.receiver_spans.value(("grpc", "accepted")) == 0


async def test_oversized_message_is_resource_exhausted(collector: Collector) -> None:
    """A message over the limit gets RESOURCE_EXHAUSTED."""
    limit = collector.settings.max_request_bytes
    request = ExportTraceServiceRequest()
    request.resource_spans.add().schema_url = "x" * (limit + 10)
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await TraceServiceStub(channel).Export(request)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_unknown_method_is_unimplemented(collector: Collector) -> None:
    """Services other than the three OTLP exports (here profiles) get UNIMPLEMENTED."""
    async with grpc.aio.insecure_channel(str(collector.grpc_endpoint)) as channel:
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_port_in_use_is_a_listen_error(collector: Collector) -> None:
    """A second receiver on a taken port fails with ListenError instead of sharing the port."""
    taken = collector.grpc_endpoint
    assert taken is not None
    second = OtlpGrpcReceiver(TracePipeline(SignalEngine([])), Endpoint(taken.host, taken.port))
    with pytest.raises(ListenError, match="cannot listen"):
        await second.start()
