"""The lexer of Go ``text/template`` (for :mod:`router.api.gotemplate_parse`).

It splits template source into Go's tokens with Go's rules: ``{{- `` and `` -}}`` trim the
spaces next to them, comments must touch their delimiters, a field or variable must end
at a terminator (space, ``.``, ``,``, ``|``, ``:``, ``(``, ``)``, ``}}``), and a problem
ends the token stream with an error token carrying Go's message (``unclosed action``,
``unterminated quoted string``, ``bad character U+0040 '@'``...), which the parser
reports when it reaches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FUNCTIONS = frozenset({"and", "or", "not", "len", "index", "print", "printf", "println",
                       "eq", "ne", "lt", "le", "gt", "ge", "json"})
UNSUPPORTED_FUNCTIONS = frozenset({"call", "html", "js", "slice", "urlquery"})
KEYWORDS = frozenset({"block", "break", "continue", "define", "else", "end", "if", "nil",
                      "range", "template", "with"})
SPACE = " \t\r\n"


class TemplateParseError(ValueError):
    """The source is not a valid Go template; the message is Go's."""


class UnsupportedTemplate(ValueError):
    """Valid Go, but outside what this agent's templates do; the message names it."""


# ---- lexer ------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str
    """text left right space field var dot ident keyword bool number char string
    rawstring pipe lparen rparen declare assign punct eof error"""
    value: str
    line: int

    def describe(self) -> str:
        """Go's ``item.String()``, as parse errors quote tokens."""
        if self.kind == "eof":
            return "EOF"
        if self.kind == "error":
            return self.value
        if self.kind in ("keyword", "dot"):
            return f"<{self.value}>"
        shown = self.value[:10] if len(self.value) > 10 else self.value
        return go_quote(shown) + ("..." if len(self.value) > 10 else "")


def go_quote(text: str) -> str:
    """Go's ``%q`` for the plain text templates hold."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\t", "\\t").replace("\r", "\\r") + '"'


_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]*(\.[0-9a-fA-F_]*)?([pP][+-]?[0-9_]*)?|"
                     r"0[oO][0-7_]*|0[bB][01_]*|[0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9_]*)?)i?")


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdigit()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.tokens: list[Token] = []
        self.paren = 0

    def line(self, pos: int | None = None) -> int:
        return 1 + self.text.count("\n", 0, self.pos if pos is None else pos)

    def emit(self, kind: str, value: str, start: int) -> None:
        self.tokens.append(Token(kind, value, self.line(start)))

    def fail(self, message: str) -> list[Token]:
        self.tokens.append(Token("error", message, self.line()))
        return self.tokens

    def run(self) -> list[Token]:
        text = self.text
        while True:
            cut = text.find("{{", self.pos)
            if cut < 0:
                if self.pos < len(text):
                    self.emit("text", text[self.pos:], self.pos)
                self.emit("eof", "EOF", len(text))
                return self.tokens
            after = text[cut + 2:cut + 4]
            trim_left = len(after) == 2 and after[0] == "-" and after[1] in SPACE
            chunk = text[self.pos:cut]
            if trim_left:
                chunk = chunk.rstrip(SPACE)
            if chunk:
                self.emit("text", chunk, self.pos)
            self.pos = cut + 2 + (2 if trim_left else 0)
            if text.startswith("/*", self.pos):
                if not self._comment():
                    return self.tokens
                continue
            self.emit("left", "{{", cut)
            if not self._action():
                return self.tokens

    def _at_right(self) -> tuple[bool, bool]:
        t, p = self.text, self.pos
        if p + 1 < len(t) and t[p] in SPACE and t[p + 1] == "-" and t.startswith("}}", p + 2):
            return True, True
        return t.startswith("}}", p), False

    def _close(self, trim: bool) -> None:
        self.pos += (2 if trim else 0) + 2
        if trim:
            while self.pos < len(self.text) and self.text[self.pos] in SPACE:
                self.pos += 1

    def _comment(self) -> bool:
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            self.fail("unclosed comment")
            return False
        self.pos = end + 2
        at, trim = self._at_right()
        if not at:
            self.fail("comment ends before closing delimiter")
            return False
        self._close(trim)
        return True

    def _action(self) -> bool:
        """Tokens up to and including the closing delimiter; False after an error."""
        self.paren = 0
        while True:
            at, trim = self._at_right()
            if at:
                if self.paren:
                    self.fail("unclosed left paren")
                    return False
                start = self.pos
                self._close(trim)
                self.emit("right", "}}", start)
                return True
            if not self._action_token():
                return False

    def _action_token(self) -> bool:
        t, start = self.text, self.pos
        if start >= len(t):
            self.fail("unclosed action")
            return False
        ch = t[start]
        if ch in SPACE:
            end = start
            while end < len(t) and t[end] in SPACE:
                end += 1
            # a run of spaces ending in " -}}" leaves its last space to the delimiter
            if t.startswith("-}}", end) and end - start >= 1:
                end -= 1
                if end == start:
                    return True
            self.pos = end
            self.emit("space", t[start:end], start)
            return True
        simple = {"=": "assign", "|": "pipe", "(": "lparen", ")": "rparen"}
        if ch in simple:
            self.paren += {"(": 1, ")": -1}.get(ch, 0)
            if self.paren < 0:
                self.fail("unexpected right paren")
                return False
            self.pos += 1
            self.emit(simple[ch], ch, start)
            return True
        if ch == ":":
            if not t.startswith(":=", start):
                self.pos += 2
                self.fail("expected :=")
                return False
            self.pos += 2
            self.emit("declare", ":=", start)
            return True
        if ch in "\"`'":
            return self._quoted(ch)
        if ch in "$":
            return self._word("var", start + 1)
        if ch == "." and not (start + 1 < len(t) and t[start + 1].isdigit()):
            return self._word("field", start + 1)
        if ch in "+-." or ch.isdigit():
            return self._number()
        if _is_alnum(ch):
            return self._word("ident", start)
        if ch.isascii() and ch.isprintable():
            self.pos += 1
            self.emit("punct", ch, start)
            return True
        self.fail(f"unrecognized character in action: {_unicode_name(ch)}")
        return False

    def _terminator(self) -> bool:
        t, p = self.text, self.pos
        if p >= len(t) or t[p] in SPACE or t[p] in ".,|:()":
            return True
        return t.startswith("}}", p)

    def _word(self, kind: str, body: int) -> bool:
        start = self.pos
        self.pos = body
        if kind != "ident" and self._terminator():
            self.emit("var" if kind == "var" else "dot", self.text[start:self.pos], start)
            return True
        while self.pos < len(self.text) and _is_alnum(self.text[self.pos]):
            self.pos += 1
        if not self._terminator():
            bad = self.text[self.pos]
            self.pos += 1
            self.fail(f"bad character {_unicode_name(bad)}")
            return False
        word = self.text[start:self.pos]
        if kind == "ident":
            kind = ("keyword" if word in KEYWORDS else
                    "bool" if word in ("true", "false") else "ident")
        self.emit(kind, word, start)
        return True

    def _number(self) -> bool:
        start = self.pos
        match = _NUMBER.match(self.text, start)
        end = match.end() if match else start
        if end < len(self.text) and _is_alnum(self.text[end]):
            self.pos = end + 1
            self.fail(f"bad number syntax: {go_quote(self.text[start:self.pos])}")
            return False
        if end < len(self.text) and self.text[end] in "+-":
            raise UnsupportedTemplate("complex numbers are not supported")
        self.pos = end
        self.emit("number", self.text[start:end], start)
        return True

    def _quoted(self, quote: str) -> bool:
        t, start = self.text, self.pos
        p = start + 1
        names = {'"': ("string", "unterminated quoted string"),
                 "`": ("rawstring", "unterminated raw quoted string"),
                 "'": ("char", "unterminated character constant")}
        kind, unterminated = names[quote]
        while True:
            if p >= len(t) or (quote != "`" and t[p] == "\n"):
                self.pos = p
                self.fail(unterminated)
                return False
            if t[p] == "\\" and quote != "`":
                if p + 1 >= len(t) or t[p + 1] == "\n":
                    self.pos = p + 1
                    self.fail(unterminated)
                    return False
                p += 2
                continue
            if t[p] == quote:
                break
            p += 1
        self.pos = p + 1
        self.emit(kind, t[start:self.pos], start)
        return True


def _unicode_name(ch: str) -> str:
    """Go's ``%#U``: ``U+0040 '@'``."""
    return f"U+{ord(ch):04X}" + (f" '{ch}'" if ch.isprintable() else "")


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\"}


def _unescape(body: str, quote: str) -> str:
    """The characters of a Go string or rune literal's body (``strconv.Unquote``'s
    rules; a bad escape is Go's ``invalid syntax``)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            if ch == quote:
                raise TemplateParseError("invalid syntax")
            out.append(ch)
            i += 1
            continue
        code = body[i + 1:i + 2]
        widths = {"x": 2, "u": 4, "U": 8}
        if code in _SIMPLE_ESCAPES or (code == quote):
            out.append(_SIMPLE_ESCAPES.get(code, quote))
            i += 2
        elif code in widths:
            digits = body[i + 2:i + 2 + widths[code]]
            if len(digits) != widths[code] or not all(c in "0123456789abcdefABCDEF"
                                                      for c in digits):
                raise TemplateParseError("invalid syntax")
            value = int(digits, 16)
            if code != "x" and (value > 0x10FFFF or 0xD800 <= value <= 0xDFFF):
                raise TemplateParseError("invalid syntax")
            out.append(chr(value))
            i += 2 + widths[code]
        elif code in "01234567" and code:
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or \
                    int(digits, 8) > 255:
                raise TemplateParseError("invalid syntax")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise TemplateParseError("invalid syntax")
    return "".join(out)


def unquote(token: Token) -> str:
    """``strconv.Unquote`` of a string or raw string token."""
    if token.kind == "rawstring":
        return token.value[1:-1].replace("\r", "")
    return _unescape(token.value[1:-1], '"')


def number(token: Token) -> int | float:
    """A number or character constant as Go's template gives it to functions: an int
    unless it is written as a float."""
    if token.kind == "char":
        try:
            chars = _unescape(token.value[1:-1], "'")
        except TemplateParseError:
            chars = ""
        if len(chars) != 1:
            raise TemplateParseError(f"malformed character constant: {token.value}")
        return ord(chars)
    text = token.value.replace("_", "")
    try:
        if text.lower().lstrip("+-").startswith(("0x", "0o", "0b")):
            if "." in text or "p" in text.lower():
                return float.fromhex(text)
            return int(text, 0)
        if any(c in text for c in ".eE"):
            return float(text)
        digits = text.lstrip("+-")
        if digits.startswith("0") and len(digits) > 1:
            return int(text, 8)
        return int(text, 10)
    except ValueError as exc:
        raise TemplateParseError(f"illegal number syntax: {go_quote(token.value)}") from exc


def lex(text: str) -> list[Token]:
    return _Lexer(text).run()
