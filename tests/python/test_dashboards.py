"""The Grafana dashboards: well-formed for provisioning (`${datasource}` variable, `id: null`, stable uids, no leftover
selections), every PromQL expression parses (promtool check rules), every metric name is in the metric contract
(the contract crate, exported as contract/metric-contract.json) or in its named kube-state-metrics / KEDA / cAdvisor lists, and a live check: a real Prometheus
scrapes the real consumer, scaler and generator on 127.0.0.1 while KEDA's calls are replayed over gRPC from the
ScaledObject, and every lab-metric query of every panel returns data (except the Kafka panels: that drive has no
broker, so Kafka metrics are checked statically here and end to end by the Kafka tests)."""

import importlib
import json
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from conftest import ROOT, http_get, http_post_json

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
STABLE_UIDS = {"autoscaling-lab.json": "autoscaling-lab-overview", "scaler.json": "autoscaling-lab-scaler",
               "kafka.json": "autoscaling-lab-kafka"}

# The metric contract, written once in the `contract` crate and exported as JSON (kept current by its Rust tests):
# the lab's own metrics, and the ones the dashboards may use beyond them, by the component that exports them.
CONTRACT = json.loads((ROOT / "contract" / "metric-contract.json").read_text())
EXTERNAL_METRICS = {component: set(names) for component, names in CONTRACT["external"].items()}
EXTERNAL = set().union(*EXTERNAL_METRICS.values())

# Values for the template variables: promtool and the live Prometheus see what Grafana would send ("All" = .*).
VARIABLES = {
    "__rate_interval": "10s",
    "datasource": "prometheus",
    "namespace": ".*",
    "deployment": ".*",
    "route": ".*",
    "vcpu_hour_price": "0.0416",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def load(path):
    return json.loads(path.read_text())


def panels(board):
    for p in board["panels"]:
        yield p
        yield from p.get("panels", [])


def queries(board):
    """(panel title, refId, expr) for every Prometheus query of the dashboard."""
    for p in panels(board):
        for t in p.get("targets", []):
            if "expr" in t:
                yield p["title"], t["refId"], t["expr"]


def substitute(expr):
    def repl(m):
        name = m.group(1) or m.group(2)
        assert name in VARIABLES, f"unknown variable ${name} in {expr}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', substitute(expr))
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # the exponent or unit of a number
        if e[m.end():].lstrip().startswith("(") or m.group(0) in PROMQL_KEYWORDS:
            continue  # a function or keyword
        names.add(m.group(0))
    return names


def contract():
    """Metric name -> type, from the contract crate's JSON export."""
    found = {m["name"]: m["type"] for part in ("consumer", "scaler", "generator") for m in CONTRACT[part]}
    assert len(found) > 20, "contract/metric-contract.json holds too few metrics"
    return found


def resolve(name, known):
    """The contract name a series name belongs to (histograms expose _bucket, _sum, _count)."""
    if name in known:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and known.get(base) == "histogram":
            return base
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Static checks


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_provisionable(path):
    board = load(path)
    assert board["id"] is None, "id must be null so Grafana assigns its own"
    assert board["uid"] == STABLE_UIDS[path.name], "uids are stable: links and bookmarks depend on them"
    assert len(board["uid"]) <= 40
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for v in variables.values():
        if v["type"] in ("datasource", "query"):
            assert v.get("current") in ({}, None), f"leftover selection in variable {v['name']}: {v.get('current')}"
            assert not v.get("options"), f"leftover options in variable {v['name']}"
        if v["type"] == "textbox":
            assert v["current"]["value"] == v["query"], f"textbox {v['name']} must default to its own query"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in panels(board):
        gp = p["gridPos"]
        assert gp["x"] + gp["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], f"panel {p['title']} has no query"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"
    text = path.read_text()
    assert "${datasource}" in text


def test_lab_dashboard_covers_the_issue():
    board = load(ROOT / "dashboards" / "autoscaling-lab.json")
    exprs = " ".join(e for _, _, e in queries(board))
    for needle in ["generator_target_rate", "http_requests_total", "http_request_duration_seconds_bucket", 'status=~"4..|5.."',
                   "kube_deployment_status_replicas_ready", "kube_horizontalpodautoscaler_status_desired_replicas",
                   "keda_scaler_metrics_value", "keda_scaler_active", "scaler_metric_value", "scaler_metric_target",
                   "consumer_jobs_queued", "consumer_allocated_bytes_total", "container_cpu_usage_seconds_total",
                   "container_memory_working_set_bytes", "$vcpu_hour_price"]:
        assert needle in exprs, needle
    kinds = {p["type"] for p in panels(board)}
    assert "heatmap" in kinds
    latency = [p for p in panels(board) if "latency" in p["title"].lower() and p["type"] != "row"]
    assert latency and all(any("Tempo" in link["title"] for link in p.get("links", [])) for p in latency)
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "route", "vcpu_hour_price", "tempo"} <= variables
    scaler = load(ROOT / "dashboards" / "scaler.json")
    exprs = " ".join(e for _, _, e in queries(scaler))
    for needle in ["scaler_grpc_requests_total", "scaler_grpc_request_duration_seconds_bucket", "scaler_source_errors_total",
                   "scaler_metric_age_seconds", "scaler_active"]:
        assert needle in exprs, needle
    assert "state-timeline" in {p["type"] for p in panels(scaler)}


def test_kafka_dashboard_covers_the_issue():
    board = load(ROOT / "dashboards" / "kafka.json")
    exprs = " ".join(e for _, _, e in queries(board))
    for needle in ["scaler_kafka_partition_lag", "by (topic, partition)", "generator_kafka_messages_total",
                   "consumer_kafka_messages_total", "generator_kafka_target_rate",
                   "consumer_kafka_rebalances_total", "consumer_kafka_assigned_partitions",
                   "consumer_kafka_processing_duration_seconds_bucket", "generator_kafka_ack_duration_seconds_bucket",
                   'deployment="consumer-kafka"']:
        assert needle in exprs, needle
    e2e = [e for _, _, e in queries(board) if "consumer_kafka_end_to_end_latency_seconds_bucket" in e]
    quantiles = {re.match(r"histogram_quantile\((0\.\d+),", e).group(1) for e in e2e}
    assert quantiles == {"0.5", "0.95", "0.99"}, quantiles
    for e in e2e:
        assert "by (le)" in e and "rate(" in e, e


def test_live_check_leaves_out_only_the_kafka_panels():
    """The live check skips Kafka panels explicitly (no broker there) and nothing else of the lab's metrics."""
    known = contract()
    live = {expr for _, expr in lab_queries()}
    for path in DASHBOARDS:
        for _, _, expr in queries(load(path)):
            names = metric_names(expr)
            lab = names and all(resolve(n, known) for n in names)
            kafka = any(is_kafka_metric(n) for n in names)
            assert (substitute(expr) in live) == (lab and not kafka), expr
    kafka_exprs = [e for _, _, e in queries(load(ROOT / "dashboards" / "kafka.json"))]
    assert kafka_exprs and all(substitute(e) not in live for e in kafka_exprs if "_kafka_" in e)


def test_every_promql_expression_parses(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is required: run scripts/setup.sh (Debian package prometheus)")
    rules = []
    for path in DASHBOARDS:
        board = load(path)
        for p in panels(board):
            for t in p.get("targets", []):
                if "expr" in t:
                    rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:panel_{p['id']}_{t['refId']}",
                                  "expr": substitute(t["expr"])})
    assert len(rules) > 30
    rules_file = tmp_path / "dashboard-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_promql_check_can_fail(tmp_path):
    """promtool really rejects a broken expression, so the check above can fail."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(foo[1m])"}]}]}))
    proc = subprocess.run([shutil.which("promtool") or "promtool", "check", "rules", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0


def test_every_metric_name_is_in_the_contract_or_a_named_list():
    known = contract()
    unknown = []
    for path in DASHBOARDS:
        for title, ref, expr in queries(load(path)):
            for name in metric_names(expr):
                if resolve(name, known) is None and name not in EXTERNAL:
                    unknown.append(f"{path.name} / {title} / {ref}: {name}")
    assert not unknown, "metric names in no contract:\n" + "\n".join(unknown)


def test_metric_name_extraction():
    expr = ('1000 * $vcpu_hour_price / 3600 * sum(rate(process_cpu_seconds_total{namespace=~"$namespace"}[5m]) '
            '* on (instance) group_left () consumer_build_info) / sum by (route) (rate(http_requests_total{route!~"/a|/b"}[1m])) '
            'or vector(1e3) offset 5m')
    assert metric_names(expr) == {"process_cpu_seconds_total", "consumer_build_info", "http_requests_total"}
    assert resolve("http_request_duration_seconds_bucket", contract()) == "http_request_duration_seconds"
    assert resolve("http_requests_total_bucket", contract()) is None


# ---------------------------------------------------------------------------------------------------------------------
# Live: every lab-metric query returns data from the real binaries


def is_kafka_metric(name):
    """Kafka series (consumer_kafka_*, generator_kafka_*, scaler_kafka_*) need a broker, a producer and a consumer group:
    the live check below drives the HTTP lab only, so it leaves these panels out on purpose."""
    return "_kafka_" in name


def lab_queries():
    known = contract()
    found = []
    for path in DASHBOARDS:
        for title, ref, expr in queries(load(path)):
            names = metric_names(expr)
            if any(is_kafka_metric(n) for n in names):
                continue
            if names and all(resolve(n, known) for n in names):
                found.append((f"{path.stem} / {title} / {ref}", substitute(expr)))
    return found


def grpc_stubs(tmp_path):
    try:
        from grpc_tools import protoc
    except ImportError:
        pytest.fail("grpcio-tools is required: run scripts/setup.sh")
    proto_dir = ROOT / "keda-proto" / "proto"
    out = tmp_path / "stubs"
    out.mkdir()
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(proto_dir / "externalscaler.proto")])
    assert rc == 0, "protoc failed on keda-proto/proto/externalscaler.proto"
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("externalscaler_pb2"), importlib.import_module("externalscaler_pb2_grpc")
    finally:
        sys.path.remove(str(out))


def drive_consumer(url):
    """A little of every kind of traffic: async and sync work, memory, a 404, and enough async jobs to overflow the
    small queue (429)."""
    statuses = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        bodies = [("/load/io", {"delay_ms": 300, "mode": "async"})] * 24
        bodies += [("/load/cpu", {"duration_ms": 20, "mode": "sync"})] * 2
        bodies += [("/load/memory", {"size_mb": 1, "duration_ms": 200, "mode": "async"})] * 2
        for status, _, _ in pool.map(lambda pb: http_post_json(url + pb[0], pb[1]), bodies):
            statuses.append(status)
    statuses.append(http_get(url + "/no-such-route")[0])
    return statuses


def drain_stream(call):
    import grpc

    try:
        for _ in call:
            pass
    except grpc.RpcError:
        pass  # cancelled at teardown


def test_every_lab_panel_query_returns_data_live(spawn, prometheus, tmp_path):
    import grpc

    pb2, pb2_grpc = grpc_stubs(tmp_path)
    consumer = spawn("consumer", ["--host", "127.0.0.1", "--port", "0", "--executors", "2", "--queue-size", "4"])
    scaler = spawn("scaler", ["--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0"], kinds=("grpc", "http"))
    generator = spawn("generator", ["run", "--url", consumer.url(), "--test", "light", "--duration", "60s",
                                    "--metrics-port", "0"], kinds=("metrics",))
    prom = prometheus([consumer.addr(), scaler.addr("http"), generator.addr("metrics")], scrape_interval="1s")

    statuses = drive_consumer(consumer.url())
    assert 429 in statuses and 404 in statuses, f"the drive must produce throttling and a 404: {sorted(set(statuses))}"

    # Replay KEDA: the ScaledObject's triggers, with the scaler and the consumer on this machine. KEDA sends the
    # trigger's whole metadata (scalerAddress included) as scalerMetadata.
    so = yaml.safe_load((ROOT / "manifests" / "components" / "keda" / "scaledobject.yaml").read_text())
    channel = grpc.insecure_channel(scaler.addr("grpc"))
    stub = pb2_grpc.ExternalScalerStub(channel)
    stream_calls = []
    for trigger in so["spec"]["triggers"]:
        metadata = dict(trigger["metadata"], scalerAddress=scaler.addr("grpc"), targets=consumer.url())
        ref = pb2.ScaledObjectRef(name="consumer", namespace="autoscaling-lab", scalerMetadata=metadata)
        try:
            spec = stub.GetMetricSpec(ref, timeout=10)
        except grpc.RpcError as err:
            pytest.fail(f"the scaler refuses trigger {trigger['name']} as KEDA sends it: {err.code()} {err.details()}")
        assert spec.metricSpecs, f"no metric spec for {trigger['name']}"
        stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricSpecs[0].metricName), timeout=10)
        stub.IsActive(ref, timeout=10)
        call = stub.StreamIsActive(ref)  # held open like KEDA's external-push, so scaler_streams_open is non-zero
        stream_calls.append(call)
        threading.Thread(target=drain_stream, args=(call,), daemon=True).start()

    def keep_polling(stop):
        # KEDA polls every pollingInterval; keep the values fresh while the queries run.
        while not stop.is_set():
            for trigger in so["spec"]["triggers"]:
                metadata = dict(trigger["metadata"], scalerAddress=scaler.addr("grpc"), targets=consumer.url())
                ref = pb2.ScaledObjectRef(name="consumer", namespace="autoscaling-lab", scalerMetadata=metadata)
                try:
                    spec = stub.GetMetricSpec(ref, timeout=5)
                    stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricSpecs[0].metricName), timeout=5)
                except grpc.RpcError:
                    pass
            stop.wait(1.0)

    stop = threading.Event()
    poller = threading.Thread(target=keep_polling, args=(stop,), daemon=True)
    poller.start()
    try:
        checks = lab_queries()
        assert len(checks) > 20
        missing = []
        deadline = time.monotonic() + 60
        for where, expr in checks:
            try:
                prom.wait_for(expr, lambda r: len(r) > 0, timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                missing.append(f"{where}: {expr}")
        assert not missing, "lab panel queries with no data:\n" + "\n".join(missing)
    finally:
        stop.set()
        for call in stream_calls:
            call.cancel()
        channel.close()
