"""Wire compatibility of the scaler with a second, independent gRPC client: Python `grpcio` stubs generated at test time
by `grpcio-tools` from keda-proto/proto/externalscaler.proto, plus hand-encoded protobuf bytes built from KEDA's published
field numbers (so a wrong number in the repo's .proto cannot hide behind code generated from that same .proto).

Needs: pip install pytest grpcio grpcio-tools; `cargo build -p scaler -p consumer`."""

import importlib
import importlib.resources
import json
import struct
import sys
import threading
import time
import urllib.request

import grpc
import pytest

from conftest import ROOT

PROTO_DIR = ROOT / "keda-proto" / "proto"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("externalscaler_stubs")
    include = importlib.resources.files("grpc_tools") / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / "externalscaler.proto"),
        ]
    )
    assert code == 0, "grpc_tools.protoc failed on keda-proto/proto/externalscaler.proto"
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("externalscaler_pb2")
        pb2_grpc = importlib.import_module("externalscaler_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return pb2, pb2_grpc


def start_scaler(spawn, *extra):
    return spawn(
        "scaler",
        ["--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", *extra],
        kinds=("grpc", "http"),
    )


def start_consumer(spawn):
    return spawn("consumer", ["--host", "127.0.0.1", "--port", "0"], kinds=("http",))


class Load:
    """Threads POSTing small CPU work to the consumer until stopped."""

    def __init__(self, url, workers=2):
        self.stop_event = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, args=(url,), daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def _run(self, url):
        body = json.dumps({"duration_ms": 5}).encode()
        while not self.stop_event.is_set():
            req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    resp.read()
                self.sent += 1
            except OSError:
                time.sleep(0.02)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)


def test_every_rpc_from_generated_python_stubs(spawn, stubs):
    pb2, pb2_grpc = stubs
    consumer = start_consumer(spawn)
    scaler = start_scaler(spawn, "--deactivate-after-polls", "1")
    channel = grpc.insecure_channel(scaler.addr("grpc"))
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = pb2_grpc.ExternalScalerStub(channel)
    ref = pb2.ScaledObjectRef(
        name="web",
        namespace="lab",
        scalerMetadata={
            "trigger": "request_rate",
            "targets": consumer.url("http") + "/metrics",
            "target": "2.5",
            "window": "2s",
        },
    )

    spec = stub.GetMetricSpec(ref, timeout=5)
    assert len(spec.metricSpecs) == 1
    metric = spec.metricSpecs[0]
    assert metric.metricName.startswith("request-rate-")
    assert metric.targetSizeFloat == 2.5
    assert metric.targetSize == 3  # the deprecated int64 field, rounded, for KEDA before 2.17

    stream = stub.StreamIsActive(ref, timeout=60)
    first = next(stream)
    assert first.result is False

    idle = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=metric.metricName), timeout=10)
    assert idle.metricValues[0].metricName == metric.metricName
    assert idle.metricValues[0].metricValueFloat == 0.0
    assert idle.metricValues[0].metricValue == 0
    assert stub.IsActive(ref, timeout=10).result is False

    load = Load(consumer.url("http") + "/load/cpu")
    try:
        started = time.monotonic()
        pushed = next(stream)
        activation = time.monotonic() - started
        assert pushed.result is True
        assert activation < 1.5, f"StreamIsActive reported load after {activation:.2f}s"
        busy = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=metric.metricName), timeout=10)
        value = busy.metricValues[0]
        assert value.metricValueFloat > 1.0
        assert value.metricValue == round(value.metricValueFloat)
        assert stub.IsActive(ref, timeout=10).result is True
    finally:
        load.stop()
    assert next(stream).result is False
    stream.cancel()

    spec_stream = stub.StreamMetricSpec(ref, timeout=30)
    assert next(spec_stream).metricSpecs[0].targetSizeFloat == 2.5
    spec_stream.cancel()
    channel.close()


def test_invalid_metadata_is_invalid_argument_naming_the_key(spawn, stubs):
    pb2, pb2_grpc = stubs
    scaler = start_scaler(spawn)
    with grpc.insecure_channel(scaler.addr("grpc")) as channel:
        stub = pb2_grpc.ExternalScalerStub(channel)
        cases = [
            ({"trigger": "request_rate", "targets": "svc", "target": "lots"}, "target"),
            ({"trigger": "latency", "targets": "svc", "percentile": "99"}, "percentile"),
            ({"trigger": "nope", "targets": "svc"}, "trigger"),
            ({"trigger": "request_rate"}, "serverAddress"),
        ]
        for metadata, key in cases:
            ref = pb2.ScaledObjectRef(name="bad", namespace="lab", scalerMetadata=metadata)
            for call in (
                lambda: stub.GetMetricSpec(ref, timeout=5),
                lambda: stub.IsActive(ref, timeout=5),
                lambda: stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="m"), timeout=5),
                lambda: next(stub.StreamIsActive(ref, timeout=5)),
            ):
                with pytest.raises(grpc.RpcError) as info:
                    call()
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, metadata
                assert f"`{key}`" in info.value.details(), info.value.details()


# --- hand-encoded protobuf, from KEDA's published field numbers -------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def scaled_object_ref_bytes(name, namespace, metadata):
    """externalscaler.ScaledObjectRef: name = 1, namespace = 2, map<string,string> scalerMetadata = 3."""
    out = length_delimited(1, name.encode()) + length_delimited(2, namespace.encode())
    for key, value in metadata.items():
        entry = length_delimited(1, key.encode()) + length_delimited(2, value.encode())
        out += length_delimited(3, entry)
    return out


def decode(buf):
    """Decodes one message level into {field: [(wire_type, value)]}."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(buf, i)
        elif wire == 1:
            value, i = struct.unpack("<d", buf[i : i + 8])[0], i + 8
        elif wire == 2:
            size, i = read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.setdefault(field, []).append((wire, value))
    return fields


def read_varint(buf, i):
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def test_keda_field_numbers_on_the_wire(spawn):
    scaler = start_scaler(spawn)
    with grpc.insecure_channel(scaler.addr("grpc")) as channel:
        raw = lambda method: channel.unary_unary(  # noqa: E731
            f"/externalscaler.ExternalScaler/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        ref = scaled_object_ref_bytes("wire", "lab", {"trigger": "latency", "targets": "svc", "target": "0.75"})
        response = decode(raw("GetMetricSpec")(ref, timeout=5))
        # GetMetricSpecResponse: repeated MetricSpec metricSpecs = 1.
        assert list(response) == [1]
        spec = decode(response[1][0][1])
        # MetricSpec: metricName = 1 (string), targetSize = 2 (int64 varint), targetSizeFloat = 3 (double).
        assert spec[1][0][1].decode().startswith("latency-p95-")
        assert spec[2] == [(0, 1)]
        assert spec[3] == [(1, 0.75)]

        # GetMetricsRequest: scaledObjectRef = 1, metricName = 2. The source is unreachable (no DNS name `svc`), so
        # the answer is UNAVAILABLE: decoding got as far as the trigger, and no made-up value is sent.
        request = length_delimited(1, ref) + length_delimited(2, spec[1][0][1])
        with pytest.raises(grpc.RpcError) as info:
            raw("GetMetrics")(request, timeout=15)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
