"""The local cluster's manifest filters: the time scale `make dev LAB_TIME_SCALE=...` applies to an overlay, and the
adjustments scripts/cluster/stack.sh makes to upstream manifests."""

import subprocess
import sys

import yaml

from conftest import ROOT

SCRIPTS = ROOT / "scripts" / "cluster"


def rendered(overlay="development"):
    proc = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout


def filtered(script, *args, stdin):
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def scaled_object(docs):
    return next(d for d in docs if d["kind"] == "ScaledObject")


def test_time_scale_shrinks_every_window_of_the_scaledobject_and_the_jobs_profile():
    original = list(yaml.safe_load_all(rendered()))
    proc = filtered("local_overlay.py", "0.25", stdin=rendered())
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    before, after = scaled_object(original)["spec"], scaled_object(docs)["spec"]
    assert after["pollingInterval"] == max(1, round(before["pollingInterval"] * 0.25))
    assert after["cooldownPeriod"] == round(before["cooldownPeriod"] * 0.25)
    down_before = before["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    down_after = after["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down_after["stabilizationWindowSeconds"] == round(down_before["stabilizationWindowSeconds"] * 0.25)
    for b, a in zip(down_before["policies"], down_after["policies"]):
        assert a["periodSeconds"] == max(1, round(b["periodSeconds"] * 0.25))
        assert isinstance(a["periodSeconds"], int)
    windows = [t["metadata"].get("window") for t in after["triggers"] if "window" in t["metadata"]]
    assert windows and all(w.endswith("s") for w in windows)
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "load-generator-settings")
    assert settings["data"]["LOAD_TIME_SCALE"] == "0.25"
    assert len(docs) == len(original), "nothing is added or dropped"


def test_time_scale_one_changes_nothing_but_the_otlp_endpoints_and_bad_factors_are_refused():
    text = rendered()
    proc = filtered("local_overlay.py", "1", stdin=text)
    expected = list(yaml.safe_load_all(text))
    for doc in expected:
        if doc["kind"] == "ConfigMap":
            doc.get("data", {}).pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    assert any("OTEL_EXPORTER_OTLP_ENDPOINT" in d.get("data", {}) for d in yaml.safe_load_all(text) if d["kind"] == "ConfigMap")
    assert list(yaml.safe_load_all(proc.stdout)) == expected
    for bad in ("0", "2", "x", "-0.5"):
        proc = filtered("local_overlay.py", bad, stdin=text)
        assert proc.returncode != 0 and "LAB_TIME_SCALE" in proc.stderr + proc.stdout or "usage" in proc.stderr, bad


def test_kafka_overlay_gets_the_repos_broker_in_place_of_strimzi_under_strimzis_service_name():
    original = list(yaml.safe_load_all(rendered("kafka")))
    proc = filtered("local_overlay.py", "1", stdin=rendered("kafka"))
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert not [d for d in docs if d["apiVersion"].startswith("kafka.strimzi.io/")]
    topics = {d["spec"]["topicName"]: d["spec"]["partitions"] for d in original if d["kind"] == "KafkaTopic"}
    assert "load-test" in topics
    broker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "kafka-broker")
    container = broker["spec"]["template"]["spec"]["containers"][0]
    # The script comes from a ConfigMap, not from this clone's path (a pod's /tmp is its own, and a clone may be there).
    assert container["command"][0] == "bash" and not container["command"][1].startswith(str(ROOT))
    script_map = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kafka-broker-script")
    assert script_map["data"]["broker.sh"] == (ROOT / "scripts/kafka/broker.sh").read_text()
    mount = next(m for m in container["volumeMounts"] if container["command"][1].startswith(m["mountPath"] + "/"))
    volume = next(v for v in broker["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "kafka-broker-script"
    assert container["command"][2] == "serve"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert sorted(env["KAFKA_TOPICS"].split(",")) == sorted(f"{n}:{p}" for n, p in topics.items())
    # Every client of the overlay names Strimzi's bootstrap address; that Service now selects the broker pod.
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "kafka-kafka-bootstrap")
    assert env["KAFKA_ADVERTISED"] == "kafka-kafka-bootstrap.autoscaling-lab.svc.cluster.local:9092"
    labels = broker["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert "kafka-kafka-bootstrap.autoscaling-lab.svc.cluster.local:9092" in proc.stdout.replace(env["KAFKA_ADVERTISED"], "", 1)
    pool = next(d for d in original if d["kind"] == "KafkaNodePool")
    assert container["resources"] == pool["spec"]["resources"]


def test_stack_filter_sets_keda_release_images_and_metrics_server_kubelet_ca():
    keda = yaml.safe_dump_all([{"kind": "Deployment", "metadata": {"name": "keda-operator", "labels": {"app.kubernetes.io/version": "main"}},
                                "spec": {"template": {"spec": {"containers": [{"image": "ghcr.io/kedacore/keda:main"}]}}}}])
    proc = filtered("stack_filter.py", "keda", "2.21.0", stdin=keda)
    assert "ghcr.io/kedacore/keda:2.21.0" in proc.stdout and ":main" not in proc.stdout, proc.stdout + proc.stderr
    ms = yaml.safe_dump({"kind": "Deployment", "metadata": {"name": "metrics-server"}, "spec": {"template": {"spec": {
        "containers": [{"args": ["--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname", "--secure-port=10250"]}]}}}})
    proc = filtered("stack_filter.py", "metrics-server", "v0.8.0", stdin=ms)
    args = yaml.safe_load(proc.stdout)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-preferred-address-types=InternalIP" in args
    assert "--kubelet-certificate-authority=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt" in args
    assert "--secure-port=10250" in args and len([a for a in args if "preferred" in a]) == 1
