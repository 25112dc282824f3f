"""Reading Kubernetes objects from YAML/JSON files into a ClusterState.

Files may hold several documents (``---``) and ``kind: List`` (or ``*List``) wrappers.
Every problem is reported with the file, the document index and the field; the valid
objects are kept, so one broken object never hides the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from npc.model.objects import ClusterState, Namespace, NetworkPolicy, Pod
from npc.model.parse import (
    FieldError,
    Invalid,
    parse_namespace,
    parse_network_policy,
    parse_pod,
)


@dataclass(frozen=True)
class Problem:
    """An input problem located in a file.  ``fatal`` problems make the command fail."""

    where: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Loaded:
    namespaces: list[Namespace] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    policies: list[NetworkPolicy] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def state(self) -> ClusterState:
        return ClusterState(tuple(self.namespaces), tuple(self.pods), tuple(self.policies))

    @property
    def failed(self) -> bool:
        return any(p.fatal for p in self.problems)


def _expand(doc: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List") \
            and isinstance(doc.get("items"), list):
        for i, item in enumerate(doc["items"]):
            yield f"{where} items[{i}]", item
    else:
        yield where, doc


def add_object(loaded: Loaded, obj: Any, where: str) -> None:
    """Parse one API object into ``loaded``, recording any problem under ``where``."""
    if not isinstance(obj, Mapping):
        loaded.problems.append(Problem(where, "not a Kubernetes object (expected a mapping)"))
        return
    kind = obj.get("kind")
    api = str(obj.get("apiVersion", ""))
    try:
        if kind == "Namespace":
            loaded.namespaces.append(parse_namespace(obj))
        elif kind == "Pod":
            loaded.pods.append(parse_pod(obj))
        elif kind == "NetworkPolicy":
            if api and api != "networking.k8s.io/v1":
                loaded.problems.append(Problem(
                    where, f"NetworkPolicy apiVersion {api!r} is not supported; "
                    "use networking.k8s.io/v1"))
                return
            policy, errors = parse_network_policy(obj)
            loaded.policies.append(policy)
            loaded.problems.extend(
                Problem(where, f"{e}; the policy's pods are isolated until it is fixed")
                for e in errors)
        else:
            loaded.problems.append(Problem(where, f"kind {kind!r} is ignored "
                                           "(only Namespace, Pod and NetworkPolicy matter)",
                                           fatal=False))
    except Invalid as exc:
        name = (obj.get("metadata") or {}).get("name", "?") if isinstance(
            obj.get("metadata"), Mapping) else "?"
        loaded.problems.append(Problem(where, str(FieldError(f"{kind} {name}", exc.path,
                                                             exc.reason))))


def load_texts(sources: Iterable[tuple[str, str]]) -> Loaded:
    """Load ``(name, text)`` pairs of YAML or JSON."""
    loaded = Loaded()
    for name, text in sources:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            loaded.problems.append(Problem(name, f"invalid YAML: {exc}"))
            continue
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            for where, obj in _expand(doc, f"{name} document {index}"):
                add_object(loaded, obj, where)
    return loaded


def load_files(paths: Iterable[str | Path]) -> Loaded:
    sources: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*")
                       if f.suffix in (".yaml", ".yml", ".json") and not f.is_dir()) \
            if path.is_dir() else [path]
        for f in files:
            try:
                sources.append((str(f), f.read_text(encoding="utf-8")))
            except OSError as exc:
                problems.append(Problem(str(f), f"cannot read: {exc.strerror}"))
            except UnicodeDecodeError as exc:
                problems.append(Problem(str(f), f"cannot read: not UTF-8 text ({exc.reason} "
                                        f"at byte {exc.start})"))
    loaded = load_texts(sources)
    loaded.problems[:0] = problems
    return loaded
