"""ARCHITECTURE.md's invariants, checked: which workspace crates each crate may depend on (through `cargo tree`, so a
transitive path counts too), metric names spelled only in the contract crate, and source files of a readable size."""

import json
import pathlib
import re
import subprocess

import pytest

from conftest import ROOT

WORKSPACE = ["contract", "keda-proto", "consumer", "scaler", "generator", "load", "monitor", "kafka-load", "autoscaler", "lab",
             "procs", "testkit", "timeline", "node-agent", "cluster", "chaos-spec"]

# crate -> the workspace crates it may link (normal dependencies, transitively). Anything else is a violation.
ALLOWED = {
    "contract": set(),
    "keda-proto": set(),
    "autoscaler": set(),
    "timeline": set(),
    "procs": {"contract"},
    "consumer": {"contract"},
    "chaos-spec": {"contract"},
    "load": {"contract", "chaos-spec", "timeline"},
    "monitor": {"contract", "load", "chaos-spec", "timeline"},
    "kafka-load": {"contract", "load", "chaos-spec", "timeline"},
    "generator": {"contract", "timeline", "load", "chaos-spec", "monitor", "kafka-load", "procs"},
    "scaler": {"contract", "keda-proto", "autoscaler", "procs"},
    "lab": {"contract", "keda-proto", "autoscaler", "load", "chaos-spec", "kafka-load", "procs", "timeline"},
    "node-agent": {"contract", "procs"},
    "cluster": {"contract", "node-agent", "procs"},
}
# crate -> outside crates it must not link (normal dependencies, transitively, default features): the load core is the
# part a user embeds, so neither a Kubernetes nor a Kafka client; the lab talks to no cluster.
FORBIDDEN_EXTERNAL = {
    "load": {"kube", "k8s-openapi", "rdkafka"},
    "chaos-spec": {"kube", "k8s-openapi", "rdkafka"},
    "monitor": {"kube", "k8s-openapi", "rdkafka"},
    "kafka-load": {"kube", "k8s-openapi"},
    "lab": {"kube", "k8s-openapi"},
}
SOURCE_LINES_LIMIT = 700


def workspace_members():
    text = (ROOT / "Cargo.toml").read_text()
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", text).group(1)
    return [m.strip().strip('"') for m in members.split(",") if m.strip()]


def linked_crates(crate):
    proc = subprocess.run(
        ["cargo", "tree", "--offline", "-p", crate, "-e", "normal", "--prefix", "none", "--format", "{p}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()} - {crate}


def linked_workspace_crates(crate):
    return linked_crates(crate) & set(WORKSPACE)


@pytest.mark.parametrize("crate", sorted(FORBIDDEN_EXTERNAL))
def test_clients_stay_where_they_belong(crate):
    found = linked_crates(crate) & FORBIDDEN_EXTERNAL[crate]
    assert not found, f"{crate} links {sorted(found)}; ARCHITECTURE.md keeps them out of it"


@pytest.mark.parametrize("crate", sorted(ALLOWED))
def test_dependencies_point_one_way(crate):
    assert crate in workspace_members(), f"{crate} has a rule but is not a workspace member: drop the rule"
    extra = linked_workspace_crates(crate) - ALLOWED[crate]
    assert not extra, f"{crate} links {sorted(extra)}; ARCHITECTURE.md allows only {sorted(ALLOWED[crate]) or 'none'}"


def test_every_member_has_a_rule():
    assert set(workspace_members()) - {"testkit"} <= set(ALLOWED)


def test_metric_names_are_spelled_only_in_the_contract():
    contract = json.loads((ROOT / "contract" / "metric-contract.json").read_text())
    names = [m["name"] for part in ("consumer", "scaler", "generator") for m in contract[part]]
    pattern = re.compile(r'"(' + "|".join(map(re.escape, names)) + r')(_bucket|_sum|_count)?[" {]')
    found = []
    for member in workspace_members():
        if member == "contract":
            continue
        for path in (ROOT / member / "src").rglob("*.rs"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if line.lstrip().startswith("//"):
                    continue
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "metric names written outside contract/:\n" + "\n".join(found)


def test_source_files_stay_readable():
    long = []
    for member in workspace_members():
        for path in (ROOT / member / "src").rglob("*.rs"):
            lines = len(path.read_text().splitlines())
            if lines > SOURCE_LINES_LIMIT:
                long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long, f"files over {SOURCE_LINES_LIMIT} lines (two concerns waiting to be split):\n" + "\n".join(long)


# One skip policy: a test whose real component is missing fails with the command that installs it. Spelled in pieces so
# that this file does not match itself.
SKIP_PATTERNS = [
    re.compile(r"pytest\." + r"skip\b"),
    re.compile(r"pytest\.mark\." + r"skip(if)?\b"),
    re.compile(r"\bimportor" + r"skip\b"),
    re.compile(r"\bSKIP" + r"PED\b"),
    re.compile(r"#\[" + r"ignore\b"),
]


def test_no_test_skips():
    files = list((ROOT / "tests").rglob("*.py"))
    for member in workspace_members():
        files += (ROOT / member).glob("tests/**/*.rs")
        files += (ROOT / member / "src").rglob("*.rs")
    found = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in SKIP_PATTERNS):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, ("a test skips instead of failing with the command that installs what it needs:\n"
                       + "\n".join(found))


# No module circles: a crate's top-level modules, with an edge a -> b when a file of `a` names `crate::b` (or reaches
# `b` through `super::`), form no cycle. Unit tests (`#[cfg(test)]` to the end of a file) are left out: a test may
# reach anywhere.
def _strip_comments_and_tests(text):
    cut = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod \w+", text, re.M)
    if cut:
        text = text[: cut.start()]
    return re.sub(r"//[^\n]*", "", text)


def _group_heads(text, start):
    """The first identifier of each top-level item of the `{...}` group opening at text[start]."""
    depth, item, heads = 0, "", []
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and ch == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += ch
    return [m.group(0) for h in heads if (m := re.match(r"\w+", h.strip()))]


def module_graph(crate):
    src = ROOT / crate / "src"
    top = {p.stem for p in src.glob("*.rs")} | {p.name for p in src.iterdir() if p.is_dir()}
    top -= {"lib", "main"}
    graph = {m: set() for m in top}
    for path in src.rglob("*.rs"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "mod":
            parts = parts[:-1]
        if not parts or parts[0] not in top:
            continue
        here = parts[0]
        text = _strip_comments_and_tests(path.read_text())
        targets = set()
        for m in re.finditer(r"\bcrate::", text):
            rest = text[m.end():]
            if rest.startswith("{"):
                targets.update(_group_heads(text, m.end()))
            elif (ident := re.match(r"\w+", rest)):
                targets.add(ident.group(0))
        for m in re.finditer(r"\b((?:super::)+)(\{|\w+)", text):
            ups = m.group(1).count("super::")
            base = parts[:-ups] if ups <= len(parts) else []
            if base:
                continue  # inside the same top-level module
            if m.group(2) == "{":
                targets.update(_group_heads(text, m.start(2)))
            else:
                targets.add(m.group(2))
        graph[here] |= (targets & top) - {here}
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("crate", sorted(set(WORKSPACE)))
def test_no_module_circles(crate):
    cycle = find_cycle(module_graph(crate))
    assert cycle is None, f"{crate}: modules in a circle: {' -> '.join(cycle)}"
