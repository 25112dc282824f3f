"""``labelSelector`` / ``fieldSelector`` query strings, parsed as kube-apiserver does."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.apiserver.resources import Obj, ResourceType, bad_request

Predicate = Callable[[Obj], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_NUMERIC = re.compile(rf"^({_KEY})\s*([<>])\s*(-?\d+)$")


def _split_terms(text: str) -> list[str]:
    """Split at commas that are not inside ``(...)``."""
    terms: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i].strip())
            start = i + 1
    terms.append(text[start:].strip())
    return terms


def _labels(obj: Obj) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, dict) else {}


def _label_requirement(term: str) -> Predicate:
    if m := _EXISTS.match(term):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda o: (key in _labels(o)) != negate
    if m := _EQUALITY.match(term):
        key, op, value = m.groups()
        if op == "!=":
            return lambda o: _labels(o).get(key) != value
        return lambda o: _labels(o).get(key) == value
    if m := _SET.match(term):
        key, op, raw = m.groups()
        values = {v.strip() for v in raw.split(",")}
        if op == "in":
            return lambda o: _labels(o).get(key) in values
        return lambda o: _labels(o).get(key) not in values

    if m := _NUMERIC.match(term):
        key, op, number = m.group(1), m.group(2), int(m.group(3))

        def compare(o: Obj) -> bool:
            try:
                have = int(_labels(o)[key])
            except (KeyError, ValueError):
                return False
            return have > number if op == ">" else have < number

        return compare
    raise bad_request(f"unable to parse requirement: {term!r}")


def label_selector(text: str | None) -> Predicate | None:
    """A predicate for a ``labelSelector`` string, or None when it selects everything."""
    if not text or not text.strip():
        return None
    requirements = [_label_requirement(t) for t in _split_terms(text)]
    return lambda o: all(r(o) for r in requirements)


def _field_value(obj: Obj, path: str) -> str:
    value: object = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_selector(rt: ResourceType, text: str | None) -> Predicate | None:
    """A predicate for a ``fieldSelector`` string (``=``, ``==``, ``!=`` on supported
    fields), or None when it selects everything."""
    if not text or not text.strip():
        return None
    allowed = {"metadata.name", "metadata.namespace", *rt.field_labels}
    tests: list[tuple[str, bool, str]] = []
    for term in _split_terms(text):
        m = re.match(r"^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$", term)
        if not m:
            raise bad_request(f"invalid selector: {term!r}")
        field, op, value = m.groups()
        if field not in allowed:
            raise bad_request(f'field label not supported: {field}')
        tests.append((field, op == "!=", value))
    return lambda o: all((_field_value(o, f) == v) != neg for f, neg, v in tests)


def combine(*predicates: Predicate | None) -> Predicate:
    active = [p for p in predicates if p is not None]
    return lambda o: all(p(o) for p in active)

