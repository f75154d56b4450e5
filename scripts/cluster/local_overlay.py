"""Fits a rendered overlay to the local cluster (`make dev` there): the OTLP endpoints go, since no Tempo runs there (the
binaries export nothing without one, instead of failing every batch); and with a time scale below 1
(`make dev LAB_TIME_SCALE=0.25`, for short runs) every duration of the ScaledObjects shrinks by the factor (pollingInterval, cooldownPeriod, initialCooldownPeriod, the HPA behavior's
stabilization windows and policy periods, the triggers' rate windows), whole seconds and at least 1 as Kubernetes
takes them, and the load Jobs' settings get LOAD_TIME_SCALE so their profiles shrink alike (the generator's
--time-scale). A factor of 1 changes nothing. No Strimzi operator runs there: a Strimzi `Kafka` with its
`KafkaNodePool` and `KafkaTopic`s becomes one broker pod (the repo's KRaft broker, scripts/kafka/broker.sh serve) behind
the Service name Strimzi would give it (`<name>-kafka-bootstrap`, port 9092), with the topics and partitions the
KafkaTopics name and the node pool's resources. Reads YAML documents on stdin, writes them to stdout.
Usage: local_overlay.py FACTOR"""

import hashlib
import pathlib
import re
import sys

import yaml

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(value, factor):
    return max(1, round(value * factor))


def scale_window(text, factor):
    """A duration string such as 30s, 1m or 1m30s, scaled; whole seconds, at least 1 s."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SystemExit(f"local_overlay.py: {text!r} is not a duration like 30s or 1m")
    total = sum(float(n) * UNITS[u] for n, u in parts)
    return f"{seconds(total, factor)}s"


def scale_scaled_object(doc, factor):
    spec = doc["spec"]
    defaults = {"pollingInterval": 30, "cooldownPeriod": 300}
    for key, default in defaults.items():
        spec[key] = seconds(spec.get(key, default), factor)
    if "initialCooldownPeriod" in spec:
        spec["initialCooldownPeriod"] = seconds(spec["initialCooldownPeriod"], factor)
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior.get(direction)
        if not rules:
            continue
        if rules.get("stabilizationWindowSeconds"):
            rules["stabilizationWindowSeconds"] = seconds(rules["stabilizationWindowSeconds"], factor)
        for policy in rules.get("policies", []):
            policy["periodSeconds"] = seconds(policy["periodSeconds"], factor)
    for trigger in spec.get("triggers", []):
        metadata = trigger.get("metadata", {})
        if "window" in metadata:
            metadata["window"] = scale_window(metadata["window"], factor)
    return doc


BROKER_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "kafka" / "broker.sh"
STRIMZI = "kafka.strimzi.io/"
KAFKA_CACHE = "/var/cache/autoscaling-lab/kafka-4.4.0"
# The script travels in a ConfigMap rather than by its path on this machine: a pod gets a private /tmp (a clone under
# /tmp is not there) and its user may not enter the directory the clone lives in.
BROKER_SCRIPT_DIR = "/opt/autoscaling-lab-kafka"


def broker_in_place_of_strimzi(docs):
    """The Strimzi objects replaced by a broker Deployment and its bootstrap Service (see the module's text)."""
    clusters = [d for d in docs if d.get("kind") == "Kafka" and d.get("apiVersion", "").startswith(STRIMZI)]
    if not clusters:
        return docs
    if len(clusters) > 1:
        raise SystemExit("local_overlay.py: more than one Strimzi Kafka; the local cluster runs one broker")
    kafka = clusters[0]
    name, namespace = kafka["metadata"]["name"], kafka["metadata"].get("namespace", "default")
    topics, resources = [], {}
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels", {})
        if doc.get("kind") == "KafkaTopic" and labels.get("strimzi.io/cluster") == name:
            spec = doc.get("spec", {})
            topics.append(f"{spec.get('topicName', doc['metadata']['name'])}:{spec.get('partitions', 1)}")
        elif doc.get("kind") == "KafkaNodePool" and labels.get("strimzi.io/cluster") == name:
            resources = doc.get("spec", {}).get("resources", {})
    bootstrap = f"{name}-kafka-bootstrap"
    script = BROKER_SCRIPT.read_text()
    script_map = f"{name}-broker-script"
    labels = {"app.kubernetes.io/name": "kafka", "app.kubernetes.io/component": "broker", "strimzi.io/cluster": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-broker", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"strimzi.io/cluster": name, "app.kubernetes.io/component": "broker"}},
            "template": {
                # A changed script rolls the broker: a ConfigMap's new content alone would not restart it.
                "metadata": {"labels": labels, "annotations": {
                    "autoscaling-lab.io/broker-script-sha256": hashlib.sha256(script.encode()).hexdigest()}},
                "spec": {
                    "enableServiceLinks": False,
                    "volumes": [{"name": "broker-script", "configMap": {"name": script_map, "defaultMode": 0o555}}],
                    "terminationGracePeriodSeconds": 30,
                    # The lab's namespace enforces Pod Security `restricted`.
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "kafka",
                        # cluster/images.yaml: this machine's bash and Java run the repo's broker script.
                        "image": "autoscaling-lab-kafka:4.4.0",
                        "command": ["bash", f"{BROKER_SCRIPT_DIR}/broker.sh", "serve", "/tmp/kafka"],
                        "volumeMounts": [{"name": "broker-script", "mountPath": BROKER_SCRIPT_DIR, "readOnly": True}],
                        "env": [
                            # scripts/cluster/stack.sh fetches the jars there, readable by the pod's user.
                            {"name": "KAFKA_CACHE", "value": KAFKA_CACHE},
                            {"name": "KAFKA_ADVERTISED", "value": f"{bootstrap}.{namespace}.svc.cluster.local:9092"},
                            {"name": "KAFKA_TOPICS", "value": ",".join(topics)},
                            {"name": "KAFKA_READY_TIMEOUT", "value": "120"},
                        ],
                        "ports": [{"name": "tcp-clients", "containerPort": 9092}],
                        "readinessProbe": {"tcpSocket": {"port": 9092}, "periodSeconds": 2, "failureThreshold": 90},
                        "resources": resources,
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": script_map, "namespace": namespace, "labels": labels},
        "data": {"broker.sh": script},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": bootstrap, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"strimzi.io/cluster": name, "app.kubernetes.io/component": "broker"},
            "ports": [{"name": "tcp-clients", "port": 9092, "targetPort": 9092}],
        },
    }
    kept = [d for d in docs if not d.get("apiVersion", "").startswith(STRIMZI)]
    return kept + [config_map, deployment, service]


def main():
    try:
        factor = float(sys.argv[1])
    except (IndexError, ValueError):
        raise SystemExit("usage: local_overlay.py FACTOR (a number in (0, 1])")
    if not 0 < factor <= 1:
        raise SystemExit(f"local_overlay.py: LAB_TIME_SCALE={sys.argv[1]} is not in (0, 1]")
    docs = broker_in_place_of_strimzi([d for d in yaml.safe_load_all(sys.stdin) if d])
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            doc.get("data", {}).pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if factor != 1:
        for doc in docs:
            if doc.get("kind") == "ScaledObject":
                scale_scaled_object(doc, factor)
            elif doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "load-generator-settings":
                doc.setdefault("data", {})["LOAD_TIME_SCALE"] = str(factor)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
