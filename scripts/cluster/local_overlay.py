"""Fits a rendered overlay to the local cluster (`make dev` there): the OTLP endpoints go, since no Tempo runs there (the
binaries export nothing without one, instead of failing every batch); and with a time scale below 1
(`make dev LAB_TIME_SCALE=0.25`, for short runs) every duration of the ScaledObjects shrinks by the factor (pollingInterval, cooldownPeriod, initialCooldownPeriod, the HPA behavior's
stabilization windows and policy periods, the triggers' rate windows), whole seconds and at least 1 as Kubernetes
takes them, and the load Jobs' settings get LOAD_TIME_SCALE so their profiles shrink alike (the generator's
--time-scale). A factor of 1 changes nothing. Reads YAML documents on stdin, writes them to stdout.
Usage: local_overlay.py FACTOR"""

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


def main():
    try:
        factor = float(sys.argv[1])
    except (IndexError, ValueError):
        raise SystemExit("usage: local_overlay.py FACTOR (a number in (0, 1])")
    if not 0 < factor <= 1:
        raise SystemExit(f"local_overlay.py: LAB_TIME_SCALE={sys.argv[1]} is not in (0, 1]")
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
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
