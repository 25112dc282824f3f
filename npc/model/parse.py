"""Kubernetes objects (the dicts the API returns, or YAML) → frozen model values.

Applies the API server's defaulting so that offline YAML behaves as it would in a cluster
(``policyTypes``, protocol ``TCP``, the ``kubernetes.io/metadata.name`` namespace label),
and rejects what the API server's validation rejects, naming the object, the field path and
the reason.  A NetworkPolicy that fails validation is still returned, marked ``rejected``,
so that the compiler can isolate its targets instead of leaving them open.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from npc.model.objects import (
    NAMESPACE_NAME_LABEL,
    ContainerPort,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Operator,
    Peer,
    Pod,
    PolicyType,
    PortSpec,
    Protocol,
    Requirement,
    Rule,
    labels_of,
)


@dataclass(frozen=True)
class FieldError:
    """One validation failure: which object, which field, and why."""

    obj: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.path}: {self.reason}"


class Invalid(Exception):
    """Raised inside the parser for one field; collected into FieldErrors."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# IANA service name, as Kubernetes validates container port names and named ports.
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_port_name(name: str, path: str) -> None:
    if not _PORT_NAME.match(name) or "--" in name or not re.search(r"[a-z]", name):
        raise Invalid(path, f"invalid port name {name!r}: must be an IANA service name "
                      "(1-15 lowercase letters, digits and '-', with at least one letter)")


def _check_label_key(key: str, path: str) -> None:
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise Invalid(path, f"invalid label key {key!r}")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise Invalid(path, f"invalid label key prefix {prefix!r}")


def _check_label_value(value: str, path: str) -> None:
    if len(value) > 63 or not _LABEL_NAME.match(value):
        raise Invalid(path, f"invalid label value {value!r}")


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(path, f"must be an object, not {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(path, f"must be a list, not {type(value).__name__}")
    return value


def _labels(value: Any, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in _mapping(value, path).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise Invalid(f"{path}.{k}", "label keys and values must be strings")
        _check_label_key(k, f"{path}.{k}")
        _check_label_value(v, f"{path}.{k}")
        out[k] = v
    return out


def parse_selector(value: Any, path: str) -> LabelSelector:
    raw = _mapping(value, path)
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise Invalid(path, f"unknown field(s) {sorted(unknown)}")
    reqs = [Requirement(k, Operator.IN, (v,), equals=True)
            for k, v in _labels(raw.get("matchLabels"), f"{path}.matchLabels").items()]
    for i, expr in enumerate(_list(raw.get("matchExpressions"), f"{path}.matchExpressions")):
        p = f"{path}.matchExpressions[{i}]"
        expr = _mapping(expr, p)
        key = expr.get("key")
        if not isinstance(key, str):
            raise Invalid(f"{p}.key", "required")
        _check_label_key(key, f"{p}.key")
        try:
            op = Operator(expr.get("operator"))
        except ValueError:
            raise Invalid(f"{p}.operator", f"unsupported operator {expr.get('operator')!r}; "
                          "must be In, NotIn, Exists or DoesNotExist") from None
        values = _list(expr.get("values"), f"{p}.values")
        if op in (Operator.IN, Operator.NOT_IN) and not values:
            raise Invalid(f"{p}.values", f"must be non-empty for operator {op.value}")
        if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
            raise Invalid(f"{p}.values", f"must be empty for operator {op.value}")
        for j, v in enumerate(values):
            if not isinstance(v, str):
                raise Invalid(f"{p}.values[{j}]", "must be a string")
            _check_label_value(v, f"{p}.values[{j}]")
        reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
    return LabelSelector(tuple(sorted(set(reqs))))


def _network(cidr: Any, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(cidr, str) or "/" not in cidr:
        raise Invalid(path, f"invalid CIDR {cidr!r}: must be an address/prefix like 10.0.0.0/16")
    try:
        # The API server accepts host bits set (ParseCIDRSloppy); so do we, normalised.
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise Invalid(path, f"invalid CIDR {cidr!r}: {exc}") from None


def _parse_ip_block(value: Any, path: str) -> IPBlock:
    raw = _mapping(value, path)
    net = _network(raw.get("cidr"), f"{path}.cidr")
    excepts = []
    for i, e in enumerate(_list(raw.get("except"), f"{path}.except")):
        p = f"{path}.except[{i}]"
        sub = _network(e, p)
        if (sub.version != net.version or not net.supernet_of(sub)  # type: ignore[arg-type]
                or sub.prefixlen <= net.prefixlen):
            raise Invalid(p, f"{e} must be a strict subset of cidr {raw.get('cidr')}")
        excepts.append(str(sub))
    return IPBlock(str(net), tuple(sorted(set(excepts))))


def _parse_peer(value: Any, path: str) -> Peer:
    raw = _mapping(value, path)
    pod = raw.get("podSelector")
    ns = raw.get("namespaceSelector")
    block = raw.get("ipBlock")
    if block is not None and (pod is not None or ns is not None):
        raise Invalid(path, "ipBlock may not be combined with podSelector or namespaceSelector")
    if block is None and pod is None and ns is None:
        raise Invalid(path, "must specify a podSelector, a namespaceSelector or an ipBlock")
    return Peer(
        pod_selector=None if pod is None else parse_selector(pod, f"{path}.podSelector"),
        namespace_selector=None if ns is None else parse_selector(ns, f"{path}.namespaceSelector"),
        ip_block=None if block is None else _parse_ip_block(block, f"{path}.ipBlock"),
    )


def _parse_port(value: Any, path: str) -> PortSpec:
    raw = _mapping(value, path)
    proto_raw = raw.get("protocol") or "TCP"
    try:
        protocol = Protocol(proto_raw)
    except ValueError:
        raise Invalid(f"{path}.protocol", f"unsupported protocol {proto_raw!r}; "
                      "must be TCP, UDP or SCTP") from None
    port = raw.get("port")
    end = raw.get("endPort")
    if isinstance(port, bool) or (port is not None and not isinstance(port, int | str)):
        raise Invalid(f"{path}.port", "must be a number or a port name")
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise Invalid(f"{path}.port", f"{port} must be between 1 and 65535")
    if isinstance(port, str):
        _check_port_name(port, f"{path}.port")
    if end is not None:
        if isinstance(end, bool) or not isinstance(end, int):
            raise Invalid(f"{path}.endPort", "must be a number")
        if port is None:
            raise Invalid(f"{path}.endPort", "may not be specified when `port` is not specified")
        if isinstance(port, str):
            raise Invalid(f"{path}.endPort", "may not be specified when `port` is a named port")
        if not 1 <= end <= 65535:
            raise Invalid(f"{path}.endPort", f"{end} must be between 1 and 65535")
        if end < port:
            raise Invalid(f"{path}.endPort", f"{end} must be greater than or equal to port {port}")
    return PortSpec(protocol, port, end)


def _parse_rule(value: Any, path: str, peers_key: str) -> Rule:
    raw = _mapping(value, path)
    peers = tuple(_parse_peer(p, f"{path}.{peers_key}[{i}]")
                  for i, p in enumerate(_list(raw.get(peers_key), f"{path}.{peers_key}")))
    ports = tuple(_parse_port(p, f"{path}.ports[{i}]")
                  for i, p in enumerate(_list(raw.get("ports"), f"{path}.ports")))
    return Rule(peers, ports)


def _meta(obj: Mapping[str, Any], kind: str) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise Invalid("metadata.name", f"{kind} must have a name")
    return (ns if isinstance(ns, str) and ns else "default"), name


def parse_namespace(obj: Mapping[str, Any]) -> Namespace:
    _, name = _meta(obj, "Namespace")
    labels = _labels((obj.get("metadata") or {}).get("labels"), "metadata.labels")
    labels[NAMESPACE_NAME_LABEL] = name  # set by the API server on every namespace
    return Namespace(name, labels_of(labels))


def parse_pod(obj: Mapping[str, Any]) -> Pod:
    ns, name = _meta(obj, "Pod")
    meta = _mapping(obj.get("metadata"), "metadata")
    spec = _mapping(obj.get("spec"), "spec")
    status = _mapping(obj.get("status"), "status")
    ips: list[str] = [str(e["ip"]) for e in _list(status.get("podIPs"), "status.podIPs")
                      if isinstance(e, Mapping) and e.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    for i, ip in enumerate(ips):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise Invalid(f"status.podIPs[{i}]", f"invalid IP address {ip!r}") from None
    ports: list[ContainerPort] = []
    for ci, c in enumerate(_list(spec.get("containers"), "spec.containers")):
        for pi, p in enumerate(_list(_mapping(c, f"spec.containers[{ci}]").get("ports"),
                                     f"spec.containers[{ci}].ports")):
            path = f"spec.containers[{ci}].ports[{pi}]"
            p = _mapping(p, path)
            number = p.get("containerPort")
            if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
                raise Invalid(f"{path}.containerPort", f"invalid port {number!r}")
            try:
                proto = Protocol(p.get("protocol") or "TCP")
            except ValueError:
                raise Invalid(f"{path}.protocol", f"unsupported protocol {p.get('protocol')!r}")\
                    from None
            pname = p.get("name") or ""
            if not isinstance(pname, str):
                raise Invalid(f"{path}.name", "must be a string")
            if pname:
                _check_port_name(pname, f"{path}.name")
            ports.append(ContainerPort(number, proto, pname))
    return Pod(
        namespace=ns,
        name=name,
        labels=labels_of(_labels(meta.get("labels"), "metadata.labels")),
        ips=tuple(ips),
        phase=str(status.get("phase") or "Pending"),
        host_network=bool(spec.get("hostNetwork")),
        node_name=str(spec.get("nodeName") or ""),
        container_ports=tuple(ports),
    )


def _policy_types(spec: Mapping[str, Any]) -> tuple[PolicyType, ...]:
    raw = _list(spec.get("policyTypes"), "spec.policyTypes")
    if not raw:
        # API server defaulting: Ingress always, Egress only when egress rules exist.
        return (PolicyType.INGRESS, PolicyType.EGRESS) if spec.get("egress") \
            else (PolicyType.INGRESS,)
    out: list[PolicyType] = []
    for i, t in enumerate(raw):
        try:
            pt = PolicyType(t)
        except ValueError:
            raise Invalid(f"spec.policyTypes[{i}]", f"unsupported value {t!r}; "
                          "must be Ingress or Egress") from None
        if pt in out:
            raise Invalid(f"spec.policyTypes[{i}]", f"duplicate value {t!r}")
        out.append(pt)
    return tuple(sorted(out, key=lambda p: p.value != "Ingress"))


def parse_network_policy(obj: Mapping[str, Any]) -> tuple[NetworkPolicy, list[FieldError]]:
    """Parse a networking.k8s.io/v1 NetworkPolicy.

    On a validation failure the returned policy is marked ``rejected`` and keeps as much of
    its target as could be read: its pod selector (or, if even that is broken, every pod of
    its namespace) and its policy types (or both types).  It then isolates those pods.
    """
    ns, name = _meta(obj, "NetworkPolicy")
    ref = f"NetworkPolicy {ns}/{name}"
    spec = obj.get("spec")
    try:
        spec = _mapping(spec, "spec")
        selector = parse_selector(spec.get("podSelector"), "spec.podSelector")
    except Invalid as exc:
        err = FieldError(ref, exc.path, exc.reason)
        return NetworkPolicy(ns, name, LabelSelector(),
                             (PolicyType.INGRESS, PolicyType.EGRESS), rejected=str(err)), [err]
    try:
        types = _policy_types(spec)
    except Invalid as exc:
        err = FieldError(ref, exc.path, exc.reason)
        return NetworkPolicy(ns, name, selector, (PolicyType.INGRESS, PolicyType.EGRESS),
                             rejected=str(err)), [err]
    errors: list[FieldError] = []
    rules: dict[str, tuple[Rule, ...]] = {}
    for key, peers_key in (("ingress", "from"), ("egress", "to")):
        parsed: list[Rule] = []
        try:
            items = _list(spec.get(key), f"spec.{key}")
        except Invalid as exc:
            errors.append(FieldError(ref, exc.path, exc.reason))
            continue
        for i, r in enumerate(items):
            try:
                parsed.append(_parse_rule(r, f"spec.{key}[{i}]", peers_key))
            except Invalid as exc:
                errors.append(FieldError(ref, exc.path, exc.reason))
        rules[key] = tuple(parsed)
    if errors:
        return NetworkPolicy(ns, name, selector, types,
                             rejected="; ".join(str(e) for e in errors)), errors
    return NetworkPolicy(ns, name, selector, types, rules["ingress"], rules["egress"]), []
