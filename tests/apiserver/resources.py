"""Resource types served by the test API server: naming, defaulting, validation, errors.

Everything here is pure (no locking, no I/O).  Objects are plain JSON dicts.  Defaulting
mirrors what kube-apiserver applies on every write to the three kinds we serve; validation
of NetworkPolicies is delegated to the product's parser, so that the server rejects exactly
what the controller under test would consider invalid.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from npc.model.objects import NAMESPACE_NAME_LABEL
from npc.model.parse import parse_network_policy

Obj = dict[str, Any]
"""A Kubernetes object (or any JSON object) as decoded from JSON."""


@dataclass(frozen=True)
class ResourceType:
    """One served resource: its REST names and where it lives."""

    kind: str
    plural: str
    singular: str
    group: str  # "" for the core group
    namespaced: bool
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    """Main-resource writes keep the stored status; only ``/status`` changes it."""
    field_labels: tuple[str, ...] = ()
    """Fields usable in a fieldSelector besides metadata.name / metadata.namespace."""

    @property
    def version(self) -> str:
        return "v1"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def prefix(self) -> str:
        """URL prefix of the group version, e.g. ``/api/v1``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def qualified(self) -> str:
        """``pods`` or ``networkpolicies.networking.k8s.io`` (as in error messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


NAMESPACE = ResourceType("Namespace", "namespaces", "namespace", "", False, ("ns",),
                         status_subresource=True, field_labels=("status.phase",))
POD = ResourceType("Pod", "pods", "pod", "", True, ("po",), status_subresource=True,
                   field_labels=("spec.nodeName", "spec.hostNetwork", "spec.restartPolicy",
                                 "spec.schedulerName", "spec.serviceAccountName",
                                 "status.phase", "status.podIP", "status.nominatedNodeName"))
NETWORK_POLICY = ResourceType("NetworkPolicy", "networkpolicies", "networkpolicy",
                              "networking.k8s.io", True, ("netpol",))
RESOURCES: tuple[ResourceType, ...] = (NAMESPACE, POD, NETWORK_POLICY)

_BY_NAME: dict[str, ResourceType] = {}
for _rt in RESOURCES:
    for _n in (_rt.kind, _rt.plural, _rt.singular, *_rt.short_names):
        _BY_NAME[_n.lower()] = _rt


def resource(name: str | ResourceType) -> ResourceType:
    """Look a resource type up by kind, plural, singular or short name (any case)."""
    if isinstance(name, ResourceType):
        return name
    try:
        return _BY_NAME[name.lower()]
    except KeyError:
        raise KeyError(f"the test API server does not serve {name!r}") from None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A failed request, rendered to the client as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str,
                 details: Obj | None = None) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": self.message, "reason": self.reason}
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(rt: ResourceType, name: str, kind: str | None = None) -> Obj:
    d: Obj = {"name": name}
    if rt.group:
        d["group"] = rt.group
    d["kind"] = kind or rt.plural
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists',
                    _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str = "the object has been modified; please "
             "apply your changes to the latest version and try again") -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
                    _details(rt, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large(asked: int, current: int) -> ApiError:
    """504 from a server whose watch cache has not reached ``asked`` yet."""
    return ApiError(504, "Timeout", f"Timeout: Too large resource version: {asked}, "
                    f"current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def forbidden(rt: ResourceType, user: str, verb: str, namespace: str | None,
              name: str | None) -> ApiError:
    """403 exactly as RBAC words it."""
    subject = f'{rt.qualified} "{name}"' if name else rt.qualified
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    details: Obj = {"name": name} if name else {}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return ApiError(403, "Forbidden", f'{subject} is forbidden: User "{user}" cannot {verb} '
                    f'resource "{rt.plural}" in API group "{rt.group}" {scope}', details)


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 with one ``{field, message}`` cause per failed field, as the real server sends."""
    parts = [f"{path}: {reason}" for path, reason in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(rt, name, rt.kind)
    details["causes"] = [{"reason": "FieldValueInvalid", "message": reason, "field": path}
                         for path, reason in causes]
    return ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {joined}', details)


# --------------------------------------------------------------------------- defaulting


def _dict_at(obj: Obj, key: str) -> Obj:
    """``obj[key]`` as a dict, creating it if absent; a non-dict value is left alone and a
    detached dict is returned (validation reports the bad value later)."""
    value = obj.get(key)
    if value is None:
        value = obj[key] = {}
    return value if isinstance(value, dict) else {}


def _dicts_in(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _default_ports(ports: Any) -> None:
    for port in _dicts_in(ports):
        if not port.get("protocol"):
            port["protocol"] = "TCP"


def _default_namespace(obj: Obj, creating: bool) -> None:
    meta = _dict_at(obj, "metadata")
    labels = _dict_at(meta, "labels")
    labels[NAMESPACE_NAME_LABEL] = meta.get("name")
    spec = _dict_at(obj, "spec")
    if creating and "finalizers" not in spec:
        spec["finalizers"] = ["kubernetes"]
    status = _dict_at(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Active"


def _default_pod(obj: Obj, creating: bool) -> None:
    spec = _dict_at(obj, "spec")
    for key in ("containers", "initContainers"):
        for container in _dicts_in(spec.get(key)):
            _default_ports(container.get("ports"))
    status = _dict_at(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def _default_network_policy(obj: Obj, creating: bool) -> None:
    spec = _dict_at(obj, "spec")
    if spec.get("podSelector") is None:
        spec["podSelector"] = {}
    for key in ("ingress", "egress"):
        for rule in _dicts_in(spec.get(key)):
            _default_ports(rule.get("ports"))
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


_DEFAULTERS: dict[str, Callable[[Obj, bool], None]] = {
    "Namespace": _default_namespace,
    "Pod": _default_pod,
    "NetworkPolicy": _default_network_policy,
}


def apply_defaults(rt: ResourceType, obj: Obj, creating: bool) -> None:
    """Apply kube-apiserver defaulting in place (done on every create and update)."""
    _DEFAULTERS[rt.kind](obj, creating)


# --------------------------------------------------------------------------- validation

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_PART = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _label_errors(labels: Any, path: str) -> list[tuple[str, str]]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [(path, "must be an object")]
    errors: list[tuple[str, str]] = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if (not name or len(name) > 63 or not _LABEL_PART.match(name)
                or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))):
            errors.append((path, f"Invalid value: {key!r}: name part must consist of "
                                 "alphanumeric characters, '-', '_' or '.'"))
        elif not isinstance(value, str) or len(value) > 63 or not _LABEL_PART.match(value):
            errors.append((f"{path}.{key}", f"Invalid value: {value!r}: a valid label value "
                                            "must be 63 characters or less"))
    return errors


def validate(rt: ResourceType, obj: Obj) -> None:
    """Raise a 422 :class:`ApiError` if the real API server would reject ``obj``."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    errors: list[tuple[str, str]] = []
    pattern, limit = (_DNS_LABEL, 63) if rt is NAMESPACE else (_DNS_SUBDOMAIN, 253)
    if len(name) > limit or not pattern.match(name):
        errors.append(("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 "
                                        f"{'label' if rt is NAMESPACE else 'subdomain'}"))
    errors += _label_errors(meta.get("labels"), "metadata.labels")
    if rt is NETWORK_POLICY and not errors:
        _, field_errors = parse_network_policy(obj)
        errors += [(e.path, e.reason) for e in field_errors]
    if errors:
        raise invalid(rt, name, errors)
