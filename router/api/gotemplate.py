"""Running Go ``text/template`` templates over the report, as ``weave report -f`` does.

``/report?format=TEMPLATE`` executes the operator's template over Go's ``WeaveStatus``
(:func:`router.api.report.weave_status`), with the function ``json`` added.  The rules are
Go's: fields of structs and keys of maps (a missing key gives ``<no value>``), a nil
pointer prints ``<nil>`` and fails when a field is taken from it, ``range`` over slices,
maps (in key order) and integers, ``if``/``with`` truth (false, 0, "", nil and empty
collections are false), ``and``/``or`` stop at the first deciding argument, comparisons
only between values of one basic kind, ``len`` of a string counts bytes.

Go writes a template's output as it goes, so a failure half-way leaves what came before
it: :class:`TemplateExecError` carries that partial output (the HTTP layer answers as Go
does).  A value Go would print with a memory address raises :class:`UnsupportedTemplate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from router.api.gofmt import Unprintable, format_value, sprintf
from router.api.gojson import UnsupportedValue, marshal
from router.api.gotemplate_parse import (
    Action,
    Break,
    Chain,
    Command,
    Continue,
    Control,
    Dot,
    Field,
    Identifier,
    Item,
    Literal,
    Node,
    Pipe,
    TemplateParseError,
    Text,
    UnsupportedTemplate,
    Variable,
    parse,
)
from router.api.govalue import (
    NO_VALUE,
    GoMap,
    GoNil,
    GoSlice,
    GoStruct,
    GoValue,
    NoValue,
    is_empty,
    type_name,
)

__all__ = ["Template", "TemplateExecError", "TemplateParseError", "UnsupportedTemplate",
           "print_value"]


class TemplateExecError(Exception):
    """Execution failed (Go's message); ``partial`` is what had been written before."""

    def __init__(self, message: str, partial: str = "") -> None:
        super().__init__(message)
        self.partial = partial


class _Failure(Exception):
    pass


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


_MISSING = object()


def print_value(value: GoValue) -> str:
    """What ``{{value}}`` writes: Go dereferences a pointer first and uses ``String()``
    where the type has one."""
    if isinstance(value, GoStruct):
        if value.stringer is not None:
            return value.stringer
        return format_value(replace(value, pointer=False))
    return format_value(value)


@dataclass(frozen=True)
class Template:
    items: tuple[Item, ...]

    @staticmethod
    def parse(text: str, name: str = "format") -> Template:
        return Template(parse(text, name))

    def execute(self, data: GoValue) -> str:
        run = _Run(data)
        try:
            run.walk(data, self.items)
        except _Failure as exc:
            raise TemplateExecError(str(exc), "".join(run.out)) from None
        except Unprintable as exc:
            raise UnsupportedTemplate(str(exc)) from None
        return "".join(run.out)


class _Run:
    def __init__(self, data: GoValue) -> None:
        self.out: list[str] = []
        self.vars: list[tuple[str, GoValue]] = [("$", data)]

    # ---- statements ----

    def walk(self, dot: GoValue, items: Sequence[Item]) -> None:
        for item in items:
            if isinstance(item, Text):
                self.out.append(item.text)
            elif isinstance(item, Action):
                value = self.pipeline(dot, item.pipe)
                if not item.pipe.decl:
                    self.out.append(print_value(value))
            elif isinstance(item, Control):
                mark = len(self.vars)
                try:
                    if item.kind == "range":
                        self.range(dot, item)
                    else:
                        self.if_or_with(dot, item)
                finally:
                    del self.vars[mark:]
            elif isinstance(item, Break):
                raise _BreakLoop
            else:
                assert isinstance(item, Continue)
                raise _ContinueLoop

    def if_or_with(self, dot: GoValue, item: Control) -> None:
        value = self.pipeline(dot, item.pipe)
        if not is_empty(value):
            self.walk(value if item.kind == "with" else dot, item.body)
        elif item.orelse is not None:
            self.walk(dot, item.orelse)

    def range(self, dot: GoValue, item: Control) -> None:
        pipe = item.pipe
        collection = self.pipeline(dot, Pipe((), False, pipe.cmds))
        pairs = self.iteration(collection, len(pipe.decl))
        if not pairs:
            if item.orelse is not None:
                self.walk(dot, item.orelse)
            return
        for index, element in pairs:
            mark = len(self.vars)
            if len(pipe.decl) == 1:
                self.bind(pipe.decl[0], element, pipe.is_assign)
            elif len(pipe.decl) == 2:
                self.bind(pipe.decl[0], index, pipe.is_assign)
                self.bind(pipe.decl[1], element, pipe.is_assign)
            try:
                self.walk(element, item.body)
            except _ContinueLoop:
                pass
            except _BreakLoop:
                break
            finally:
                del self.vars[mark:]

    @staticmethod
    def iteration(value: GoValue, decls: int) -> list[tuple[GoValue, GoValue]]:
        if isinstance(value, GoSlice):
            return list(enumerate(value.items))
        if isinstance(value, GoMap):
            return [(k, v) for k, v in value.entries]
        if isinstance(value, NoValue):
            return []
        if isinstance(value, int) and not isinstance(value, bool):
            if decls > 1:
                raise _Failure(f"can't use {value} to iterate over more than one variable")
            return [(i, i) for i in range(value)]
        raise _Failure(f"range can't iterate over {print_value(value)}")

    def bind(self, name: str, value: GoValue, assign: bool) -> None:
        if assign:
            self.assign(name, value)
        else:
            self.vars.append((name, value))

    def assign(self, name: str, value: GoValue) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise _Failure(f"undefined variable: {name}")

    def variable(self, name: str) -> GoValue:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise _Failure(f"undefined variable: {name}")

    # ---- expressions ----

    def pipeline(self, dot: GoValue, pipe: Pipe) -> GoValue:
        value: object = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        assert value is not _MISSING
        result: GoValue = value  # type: ignore[assignment]
        if isinstance(result, GoNil) and result.type_name == "interface {}":
            result = NO_VALUE  # Go: a nil interface{} result is no value at all
        for name in pipe.decl:
            self.bind(name, result, pipe.is_assign)
        return result

    def command(self, dot: GoValue, cmd: Command, final: object) -> GoValue:
        first, rest = cmd.args[0], cmd.args[1:]
        if isinstance(first, Identifier):
            return self.call(dot, first.name, rest, final)
        if isinstance(first, Field):
            return self.fields(dot, first.names, rest, final)
        if isinstance(first, Variable):
            return self.fields(self.variable(first.name), first.fields, rest, final)
        if isinstance(first, Chain):
            return self.fields(self.pipeline(dot, first.node), first.fields, rest, final)
        if isinstance(first, Literal) and first.value is None:
            raise _Failure("nil is not a command")
        if rest or final is not _MISSING:
            raise _Failure(f"can't give argument to non-function {first}")
        return self.arg(dot, first)

    def fields(self, receiver: GoValue, names: Sequence[str], args: Sequence[Node],
               final: object) -> GoValue:
        if not names:
            if args or final is not _MISSING:
                raise _Failure("can't give argument to non-function")
            return receiver
        for i, name in enumerate(names):
            if i == len(names) - 1 and (args or final is not _MISSING):
                raise _Failure(f"{name} has arguments but cannot be invoked as function")
            receiver = self.field(receiver, name)
        return receiver

    @staticmethod
    def field(receiver: GoValue, name: str) -> GoValue:
        if isinstance(receiver, NoValue):
            return NO_VALUE
        if isinstance(receiver, GoMap):
            value = receiver.get(name)
            return NO_VALUE if value is None else value
        if isinstance(receiver, GoStruct):
            value = receiver.get(name)
            if value is not None:
                return value
            if name == "String" and receiver.stringer is not None:
                return receiver.stringer
        if isinstance(receiver, GoNil) and receiver.type_name.startswith("*"):
            raise _Failure(f"nil pointer evaluating {receiver.type_name}.{name}")
        raise _Failure(f"can't evaluate field {name} in type {type_name(receiver)}")

    def arg(self, dot: GoValue, node: Node) -> GoValue:
        if isinstance(node, Dot):
            return dot
        if isinstance(node, Literal):
            if isinstance(node.value, int) and not isinstance(node.value, bool) and \
                    not -2**63 <= node.value < 2**63:
                raise _Failure(f"{node.text} overflows int")
            return GoNil() if node.value is None else node.value
        if isinstance(node, Field):
            return self.fields(dot, node.names, (), _MISSING)
        if isinstance(node, Variable):
            return self.fields(self.variable(node.name), node.fields, (), _MISSING)
        if isinstance(node, Chain):
            return self.fields(self.pipeline(dot, node.node), node.fields, (), _MISSING)
        if isinstance(node, Pipe):
            mark = len(self.vars)
            try:
                return self.pipeline(dot, node)
            finally:
                del self.vars[mark:]
        return self.call(dot, node.name, (), _MISSING)

    def call(self, dot: GoValue, name: str, nodes: Sequence[Node], final: object) -> GoValue:
        if name in ("and", "or"):
            return self.and_or(dot, name, nodes, final)
        args = [self.arg(dot, n) for n in nodes]
        if final is not _MISSING:
            args.append(final)  # type: ignore[arg-type]
        args = [GoNil() if isinstance(a, NoValue) else a for a in args]
        function = FUNCTIONS[name]
        try:
            return function(args)
        except _Failure as exc:
            raise _Failure(f"error calling {name}: {exc}") from None

    def and_or(self, dot: GoValue, name: str, nodes: Sequence[Node], final: object) -> GoValue:
        count = len(nodes) + (final is not _MISSING)
        if count < 1:
            raise _Failure(f"wrong number of args for {name}: want at least 1 got 0")
        value: GoValue = GoNil()
        for i in range(count):
            value = self.arg(dot, nodes[i]) if i < len(nodes) else final  # type: ignore[assignment]
            if is_empty(value) == (name == "and"):
                return value
        return value


# ---- functions ----------------------------------------------------------------------


def _want(args: list[GoValue], n: int, name: str) -> None:
    if len(args) != n:
        raise _Failure(f"wrong number of args for {name}: want {n} got {len(args)}")


def _len(args: list[GoValue]) -> GoValue:
    _want(args, 1, "len")
    item = args[0]
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, GoSlice):
        return len(item.items)
    if isinstance(item, GoMap):
        return len(item.entries)
    if isinstance(item, GoNil):
        raise _Failure("len of nil pointer")
    raise _Failure(f"len of type {type_name(item)}")


def _index(args: list[GoValue]) -> GoValue:
    if not args:
        raise _Failure("wrong number of args for index: want at least 1 got 0")
    item = args[0]
    for key in args[1:]:
        if isinstance(item, GoSlice):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _Failure(f"cannot index slice/array with type {type_name(key)}")
            if not 0 <= key < len(item.items):
                raise _Failure(f"index out of range: {key}")
            item = item.items[key]
        elif isinstance(item, GoMap):
            if not isinstance(key, str):
                raise _Failure(f"value has type {type_name(key)}; should be string")
            found = item.get(key)
            item = item.zero if found is None else found
        elif isinstance(item, GoNil):
            raise _Failure("index of untyped nil")
        else:
            raise _Failure(f"can't index item of type {type_name(item)}")
    return item


def _print(args: list[GoValue]) -> GoValue:
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg))
    return "".join(out)


def _println(args: list[GoValue]) -> GoValue:
    return " ".join(format_value(a) for a in args) + "\n"


def _printf(args: list[GoValue]) -> GoValue:
    if not args or not isinstance(args[0], str):
        raise _Failure("wrong type for value; expected string")
    return sprintf(args[0], args[1:])


def _json(args: list[GoValue]) -> GoValue:
    _want(args, 1, "json")
    try:
        return marshal(args[0])
    except UnsupportedValue:
        return ""  # Go ignores the error and prints nothing


def _not(args: list[GoValue]) -> GoValue:
    _want(args, 1, "not")
    return is_empty(args[0])


def _kind(value: GoValue) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _equal(a: GoValue, b: GoValue) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka == kb == "other":
        if isinstance(a, GoNil) or isinstance(b, GoNil):
            return isinstance(a, GoNil) and isinstance(b, GoNil)
        raise _Failure(f"non-comparable type {type_name(a)}")
    if ka != kb:
        if isinstance(a, GoNil) or isinstance(b, GoNil):
            return False  # nil against a value: unequal, as Go's invalid value is
        raise _Failure(f"incompatible types for comparison: {type_name(a)} and "
                       f"{type_name(b)}")
    return a == b


def _eq(args: list[GoValue]) -> GoValue:
    if len(args) < 2:
        raise _Failure("missing argument for comparison")
    return any(_equal(args[0], other) for other in args[1:])


def _ne(args: list[GoValue]) -> GoValue:
    _want(args, 2, "ne")
    return not _equal(args[0], args[1])


def _less(a: GoValue, b: GoValue) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka in ("bool", "other") or kb in ("bool", "other"):
        raise _Failure("invalid type for comparison")
    if ka != kb:
        raise _Failure(f"incompatible types for comparison: {type_name(a)} and {type_name(b)}")
    return a < b  # type: ignore[operator]


def _compare(name: str, test: Callable[[GoValue, GoValue], bool]) -> Callable[
        [list[GoValue]], GoValue]:
    def compare(args: list[GoValue]) -> GoValue:
        _want(args, 2, name)
        return test(args[0], args[1])
    return compare


FUNCTIONS: dict[str, Callable[[list[GoValue]], GoValue]] = {
    "len": _len, "index": _index, "print": _print, "println": _println, "printf": _printf,
    "json": _json, "not": _not, "eq": _eq, "ne": _ne,
    "lt": _compare("lt", _less),
    "le": _compare("le", lambda a, b: _less(a, b) or _equal(a, b)),
    "gt": _compare("gt", lambda a, b: not (_less(a, b) or _equal(a, b))),
    "ge": _compare("ge", lambda a, b: not _less(a, b)),
}
