"""Adjusts an upstream project's rendered manifests for the local cluster, the way their releases and their docs for
kind do, and nothing else: KEDA's images get the release tag (KEDA's `make release` sets it the same way);
metrics-server is told to reach the kubelet API by InternalIP and to verify it with the cluster CA (the projected
service-account ca.crt) instead of the system roots. Reads YAML documents on stdin, writes them to stdout.
Usage: stack_filter.py keda VERSION | stack_filter.py metrics-server VERSION"""

import sys

import yaml


def keda(doc, version):
    text = yaml.safe_dump(doc)
    for image in ("keda", "keda-metrics-apiserver", "keda-admission-webhooks"):
        text = text.replace(f"ghcr.io/kedacore/{image}:main", f"ghcr.io/kedacore/{image}:{version}")
    text = text.replace("app.kubernetes.io/version: main", f"app.kubernetes.io/version: {version}")
    return yaml.safe_load(text)


def metrics_server(doc, version):
    if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "metrics-server":
        container = doc["spec"]["template"]["spec"]["containers"][0]
        args = [a for a in container.get("args", []) if not a.startswith("--kubelet-preferred-address-types")]
        args += ["--kubelet-preferred-address-types=InternalIP",
                 "--kubelet-certificate-authority=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"]
        container["args"] = args
    return doc


def main():
    kind, version = sys.argv[1], sys.argv[2]
    change = {"keda": keda, "metrics-server": metrics_server}[kind]
    docs = [change(d, version) for d in yaml.safe_load_all(sys.stdin) if d]
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
