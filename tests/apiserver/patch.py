"""PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

The official Python client sends a dict body as ``application/strategic-merge-patch+json``
and a list body as ``application/json-patch+json``.  Strategic merge patch is applied here
as a plain merge patch: identical for maps (labels, annotations, selectors), but lists are
replaced wholesale instead of being merged by key (a documented deviation).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.apiserver.resources import ApiError, Obj, bad_request

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", f"jsonpatch: missing value at {path!r}") from None
    return node


def _index(node: list[Any], key: str, path: str, allow_end: bool) -> int:
    if allow_end and key == "-":
        return len(node)
    try:
        index = int(key)
    except ValueError:
        raise ApiError(422, "Invalid", f"jsonpatch: bad array index in {path!r}") from None
    if not 0 <= index <= len(node) - (0 if allow_end else 1):
        raise ApiError(422, "Invalid", f"jsonpatch: index out of range in {path!r}")
    return index


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    node = _parent(doc, parts, path)
    try:
        return node[_index(node, parts[-1], path, False)] if isinstance(node, list) \
            else node[parts[-1]]
    except (KeyError, TypeError):
        raise ApiError(422, "Invalid", f"jsonpatch: missing value at {path!r}") from None


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    node = _parent(doc, parts, path)
    if isinstance(node, list):
        return node.pop(_index(node, parts[-1], path, False))
    if not isinstance(node, dict) or parts[-1] not in node:
        raise ApiError(422, "Invalid", f"jsonpatch: cannot remove missing {path!r}")
    return node.pop(parts[-1])


def _add(doc: Any, path: str, value: Any, replace: bool) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    node = _parent(doc, parts, path)
    if isinstance(node, list):
        index = _index(node, parts[-1], path, not replace)
        if replace:
            node[index] = value
        else:
            node.insert(index, value)
    elif isinstance(node, dict):
        if replace and parts[-1] not in node:
            raise ApiError(422, "Invalid", f"jsonpatch: cannot replace missing {path!r}")
        node[parts[-1]] = value
    else:
        raise ApiError(422, "Invalid", f"jsonpatch: cannot add at {path!r}")
    return doc


def json_patch(target: Obj, ops: Any) -> Any:
    """RFC 6902 ``add``/``remove``/``replace``/``move``/``copy``/``test``."""
    if not isinstance(ops, list):
        raise bad_request("json patch body must be a list of operations")
    doc: Any = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise bad_request(f"invalid json patch operation {op!r}")
        kind, path = op.get("op"), op["path"]
        if kind in ("add", "replace"):
            doc = _add(doc, path, copy.deepcopy(op.get("value")), kind == "replace")
        elif kind == "remove":
            _remove(doc, path)
        elif kind in ("move", "copy"):
            source = str(op.get("from", ""))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_get(doc, source))
            doc = _add(doc, path, value, False)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(422, "Invalid", f"jsonpatch: test failed at {path!r}")
        else:
            raise bad_request(f"unsupported json patch operation {kind!r}")
    return doc


def apply_patch(content_type: str, target: Obj, body: Any) -> Obj:
    """Apply a PATCH body of the given media type; raise 415 for unsupported types."""
    media = content_type.split(";")[0].strip().lower()
    if media in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        result = merge_patch(target, body)
    elif media == JSON_PATCH:
        result = json_patch(target, body)
    else:
        raise ApiError(415, "UnsupportedMediaType",
                       f"the body of the request was in an unknown format - accepted media "
                       f"types include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}")
    if not isinstance(result, dict):
        raise bad_request("patch result is not an object")
    return result
