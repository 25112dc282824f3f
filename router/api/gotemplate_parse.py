"""Parsing Go ``text/template`` source, for ``/report?format=`` (``weave report -f``).

The subset covers what operators' scripts and weave's own docs and tests use, and what
reads naturally next to it: text, ``{{pipeline}}`` with fields (``.Router.Name``),
variables (``$``, ``$x := ...``, ``$x = ...``), literals (strings, raw strings, numbers,
characters, ``true``/``false``/``nil``), parenthesised pipelines and field chains on them,
``|`` pipes, ``if``/``else if``/``else``, ``with``/``else with``, ``range`` (with one or
two variables, ``else``, ``break``, ``continue``), comments and ``{{-``/``-}}`` trimming,
and the functions ``and or not len index print printf println eq ne lt le gt ge json``.

Errors in the source are reported with Go's text (``template: format:1: function "foo"
not defined``): the agent answers them with 400 as Go does.  What Go has and this does
not (``define``, ``template``, ``block``; the functions ``call html js slice urlquery``;
complex numbers) is refused with :class:`UnsupportedTemplate`, naming the construct.

The grammar and the messages are Go's (``text/template/parse``); the tree is frozen
dataclasses, executed by :mod:`router.api.gotemplate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from router.api.gotemplate_lex import (
    FUNCTIONS,
    UNSUPPORTED_FUNCTIONS,
    TemplateParseError,
    Token,
    UnsupportedTemplate,
    go_quote,
    lex,
    number,
    unquote,
)

__all__ = ["TemplateParseError", "UnsupportedTemplate", "parse"]

# ---- tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dot:
    pass


@dataclass(frozen=True)
class Literal:
    value: str | bool | int | float | None
    """None is ``nil``."""
    text: str = ""
    """As written (for messages)."""


@dataclass(frozen=True)
class Identifier:
    name: str


@dataclass(frozen=True)
class Chain:
    node: Pipe
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Pipe:
    decl: tuple[str, ...]
    is_assign: bool
    cmds: tuple[Command, ...]


Node = Field | Variable | Dot | Literal | Identifier | Chain | Pipe


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Action:
    pipe: Pipe


@dataclass(frozen=True)
class Control:
    kind: str
    """``if``, ``with`` or ``range``."""
    pipe: Pipe
    body: tuple[Item, ...]
    orelse: tuple[Item, ...] | None


@dataclass(frozen=True)
class Break:
    pass


@dataclass(frozen=True)
class Continue:
    pass


Item = Text | Action | Control | Break | Continue



@dataclass
class Source:
    """The tokens being parsed, with a cursor."""

    tokens: list[Token]
    name: str
    index: int = 0
    variables: list[str] = field(default_factory=lambda: ["$"])
    range_depth: int = 0
    last: Token | None = None

    def next(self) -> Token:
        token = self.tokens[min(self.index, len(self.tokens) - 1)]
        self.index += 1
        self.last = token
        return token

    def peek(self) -> Token:
        return self.tokens[min(self.index, len(self.tokens) - 1)]

    def next_non_space(self) -> Token:
        token = self.next()
        while token.kind == "space":
            token = self.next()
        return token

    def peek_non_space(self) -> Token:
        saved = self.index
        token = self.next_non_space()
        self.index = saved
        return token

    def error(self, message: str) -> TemplateParseError:
        line = self.last.line if self.last else 1
        return TemplateParseError(f"template: {self.name}:{line}: {message}")

    def unexpected(self, token: Token, context: str) -> TemplateParseError:
        if token.kind == "error":
            return self.error(token.value)
        return self.error(f"unexpected {token.describe()} in {context}")


@dataclass(frozen=True)
class _End:
    def __str__(self) -> str:
        return "{{end}}"


@dataclass(frozen=True)
class _Else:
    def __str__(self) -> str:
        return "{{else}}"


def parse(text: str, name: str = "format") -> tuple[Item, ...]:
    """The items of a template (raises :class:`TemplateParseError` with Go's message,
    or :class:`UnsupportedTemplate`)."""
    src = Source(lex(text), name)
    items: list[Item] = []
    while src.peek().kind != "eof":
        item = _text_or_action(src)
        if isinstance(item, _End | _Else):
            raise src.error(f"unexpected {item}")
        items.append(item)
    return tuple(items)


def _text_or_action(src: Source) -> Item | _End | _Else:
    token = src.next_non_space()
    if token.kind == "text":
        return Text(token.value)
    if token.kind == "left":
        return _action(src)
    raise src.unexpected(token, "input")


def _item_list(src: Source) -> tuple[tuple[Item, ...], _End | _Else]:
    items: list[Item] = []
    while src.peek_non_space().kind != "eof":
        item = _text_or_action(src)
        if isinstance(item, _End | _Else):
            return tuple(items), item
        items.append(item)
    raise src.error("unexpected EOF")


def _expect_right(src: Source, context: str) -> None:
    token = src.next_non_space()
    if token.kind != "right":
        raise src.unexpected(token, context)


def _action(src: Source) -> Item | _End | _Else:
    token = src.next_non_space()
    word = token.value if token.kind == "keyword" else ""
    if word in ("block", "define", "template"):
        raise UnsupportedTemplate(f"{{{{{word}}}}} is not supported in report templates")
    if word in ("break", "continue"):
        _expect_right(src, f"{{{{{word}}}}}")
        if src.range_depth == 0:
            raise src.error(f"{{{{{word}}}}} outside {{{{range}}}}")
        return Break() if word == "break" else Continue()
    if word == "else":
        following = src.peek_non_space()
        if not (following.kind == "keyword" and following.value in ("if", "with")):
            _expect_right(src, "else")
        return _Else()
    if word == "end":
        _expect_right(src, "end")
        return _End()
    if word in ("if", "range", "with"):
        return _control(src, word)
    src.index -= 1
    return Action(_pipeline(src, "command", "right"))


def _control(src: Source, kind: str) -> Control:
    saved = len(src.variables)
    pipe = _pipeline(src, kind, "right")
    src.range_depth += kind == "range"
    body, end = _item_list(src)
    src.range_depth -= kind == "range"
    orelse: tuple[Item, ...] | None = None
    if isinstance(end, _Else):
        following = src.peek_non_space()
        if kind in ("if", "with") and following.kind == "keyword" and following.value == kind:
            src.next_non_space()
            orelse = (_control(src, kind),)
        else:
            orelse, end = _item_list(src)
            if not isinstance(end, _End):
                raise src.error(f"expected end; found {end}")
    del src.variables[saved:]
    return Control(kind, pipe, body, orelse)


_OPERAND_STARTS = frozenset({"bool", "char", "dot", "field", "ident", "number", "string",
                             "rawstring", "var", "lparen"})


def _declarations(src: Source, context: str) -> tuple[list[str], bool]:
    decl: list[str] = []
    is_assign = False
    while src.peek_non_space().kind == "var":
        start = src.index
        var = src.next_non_space()
        following = src.peek_non_space()
        if following.kind in ("assign", "declare"):
            is_assign = following.kind == "assign"
            src.next_non_space()
            decl.append(var.value)
            src.variables.append(var.value)
        elif following.kind == "punct" and following.value == ",":
            src.next_non_space()
            decl.append(var.value)
            src.variables.append(var.value)
            if context == "range" and len(decl) < 2:
                if src.peek_non_space().kind in ("var", "right", "rparen"):
                    continue
                raise src.error("range can only initialize variables")
            raise src.error(f"too many declarations in {context}")
        else:
            src.index = start
        break
    return decl, is_assign


def _pipeline(src: Source, context: str, end: str) -> Pipe:
    decl, is_assign = _declarations(src, context)
    cmds: list[Command] = []
    while True:
        token = src.next_non_space()
        if token.kind == end:
            break
        if token.kind in _OPERAND_STARTS or (token.kind == "keyword" and token.value == "nil"):
            src.index -= 1
            cmds.append(_command(src))
            continue
        raise src.unexpected(token, context)
    if not cmds:
        raise src.error(f"missing value for {context}")
    for stage, cmd in enumerate(cmds[1:], start=2):
        if isinstance(cmd.args[0], Literal | Dot):
            raise src.error(f"non executable command in pipeline stage {stage}")
    return Pipe(tuple(decl), is_assign, tuple(cmds))


def _command(src: Source) -> Command:
    args: list[Node] = []
    while True:
        src.peek_non_space()
        while src.peek().kind == "space":
            src.next()
        operand = _operand(src)
        if operand is not None:
            args.append(operand)
        token = src.next()
        if token.kind == "space":
            continue
        if token.kind in ("right", "rparen"):
            src.index -= 1
        elif token.kind != "pipe":
            raise src.unexpected(token, "operand")
        break
    if not args:
        raise src.error("empty command")
    return Command(tuple(args))


def _operand(src: Source) -> Node | None:
    node = _term(src)
    if node is None or src.peek().kind != "field":
        return node
    more: list[str] = []
    while src.peek().kind == "field":
        more.append(src.next().value[1:])
    if isinstance(node, Field):
        return Field(node.names + tuple(more))
    if isinstance(node, Variable):
        return Variable(node.name, node.fields + tuple(more))
    if isinstance(node, Literal | Dot):
        written = node.text if isinstance(node, Literal) else "."
        raise src.error(f"unexpected . after term {go_quote(written)}")
    if isinstance(node, Identifier):
        raise UnsupportedTemplate(f"fields of a function's result ({node.name}.{more[0]}): "
                                  f"use ({node.name} ...).{more[0]}")
    assert isinstance(node, Pipe)
    return Chain(node, tuple(more))


def _term(src: Source) -> Node | None:
    token = src.next_non_space()
    kind, value = token.kind, token.value
    if kind == "ident":
        if value in UNSUPPORTED_FUNCTIONS:
            raise UnsupportedTemplate(f"the function {value!r} is not supported in report "
                                      f"templates")
        if value not in FUNCTIONS:
            raise src.error(f'function "{value}" not defined')
        return Identifier(value)
    if kind == "dot":
        return Dot()
    if kind == "keyword" and value == "nil":
        return Literal(None, "nil")
    if kind == "var":
        if value not in src.variables:
            raise src.error(f'undefined variable "{value}"')
        return Variable(value)
    if kind == "field":
        return Field((value[1:],))
    if kind == "bool":
        return Literal(value == "true", value)
    if kind in ("number", "char"):
        return Literal(_literal(src, token), value)
    if kind == "lparen":
        return _pipeline(src, "parenthesized pipeline", "rparen")
    if kind in ("string", "rawstring"):
        try:
            return Literal(unquote(token), value)
        except TemplateParseError as exc:
            raise src.error(str(exc)) from exc
    src.index -= 1
    return None


def _literal(src: Source, token: Token) -> int | float:
    try:
        return number(token)
    except TemplateParseError as exc:
        raise src.error(str(exc)) from exc
