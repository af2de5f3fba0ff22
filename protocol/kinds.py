"""Kinds and their body schemas (PROTOCOL.md section 4).

A message's ``kind`` names the shape of its body. For a *known* kind the body must match
the kind's schema exactly, or the message is rejected with ``bad_body``; a message of an
unknown kind is stored and relayed but not shown, so its body is not looked at here.

The schemas are data: :data:`SCHEMAS` maps each kind to a :class:`KindSchema` built
from a handful of field specs (:class:`Str`, :class:`Pattern`, :class:`Enum`,
:class:`Int`, :class:`Bin`, :class:`ListOf`, :class:`MapOf`, :class:`OneOf`,
:class:`Nil`) and cross-field rules (:class:`Ordered`, :class:`CountByType`), so that
the documentation (:func:`schema_markdown`) and the tests iterate over the same table
that :func:`check_body` enforces. The rules that hold for every kind are in
:data:`GENERAL_RULES`.

Only the shape of one body is checked: whether refs point at messages of the right
kind, whether an edit has the same author as the original, whether answers match the
survey's questions, and who may publish what are for the views and the authorization
rules, which see more than one message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from .errors import BadBody

__all__ = [
    "GENERAL_RULES",
    "KNOWN_KINDS",
    "SCHEMAS",
    "Bin",
    "CountByType",
    "Enum",
    "Field",
    "Int",
    "KindSchema",
    "ListOf",
    "MapOf",
    "Nil",
    "OneOf",
    "Ordered",
    "Pattern",
    "Refs",
    "Rule",
    "Spec",
    "Str",
    "check_body",
    "schema_markdown",
]

# --------------------------------------------------------------------------- strings

# Every str: no C0 control except TAB, LF, CR; no DEL; no C1 control; no surrogate
# (a surrogate cannot come from valid UTF-8, but check_body may be called directly).
_TEXT_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# A one-line str additionally refuses TAB, LF, CR, LINE SEPARATOR, PARAGRAPH SEPARATOR.
_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

# A quick look that rules out every such character in one pass over the UTF-8 bytes
# (the regexes above read the str one character at a time, ~5x slower): a C0 control
# or DEL is a byte of its own; a C1 control's first byte is C2 (as is U+0080..U+00BF's,
# so C2 only sends the str to the regex); U+2028 and U+2029 are E2 80 A8 and E2 80 A9;
# a surrogate cannot be encoded.
_TEXT_OK_BYTES = bytes(b for b in range(256) if not (b < 0x20 or b == 0x7F) or b in b"\t\n\r")
_LINE_OK_BYTES = bytes(b for b in range(256) if not (b < 0x20 or b == 0x7F))


def _clean(value: str, multiline: bool) -> bool:
    """True when ``value`` surely holds none of the characters its regex refuses
    (False: ask the regex)."""
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if data.translate(None, _TEXT_OK_BYTES if multiline else _LINE_OK_BYTES):
        return False
    if b"\xc2" in data:
        return False
    return multiline or (b"\xe2\x80\xa8" not in data and b"\xe2\x80\xa9" not in data)


_SHOW_MAX = 40


def _show(value: object) -> str:
    """A short repr of an untrusted value for an error message."""
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _type_name(value: object) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes):
        return "bin"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; it is never an int here.
    return isinstance(value, int) and not isinstance(value, bool)


def _range(lo: int, hi: int, unit: str = "") -> str:
    suffix = f" {unit}" if unit else ""
    if lo == hi:
        return f"exactly {lo:,}{suffix}"
    return f"{lo:,}..{hi:,}{suffix}"


# --------------------------------------------------------------------------- specs


class Spec:
    """What one value must be. Subclasses are frozen dataclasses.

    :meth:`check` says why a value does not match; :meth:`fits` is the quick test
    that runs first (no paths built, no exceptions): ``fits(v)`` True means that
    ``check(v, path)`` passes. False only means "run check" (it may still pass, for a
    subclass of str, say), so every rejection still comes from :meth:`check`.
    """

    #: The msgpack type this spec takes, for error messages.
    TYPE: ClassVar[str] = "?"

    def type_name(self) -> str:
        """The msgpack type(s) this spec takes."""
        return self.TYPE

    def accepts_type(self, value: object) -> bool:
        """True when ``value`` has this spec's type (its limits are not looked at)."""
        raise NotImplementedError

    def check(self, value: object, path: str) -> None:
        """Raise :class:`BadBody` naming ``path`` unless ``value`` matches."""
        if not self.accepts_type(value):
            raise BadBody(f"{path}: must be {self.type_name()}, got {_type_name(value)}")
        self.check_limits(value, path)

    def check_limits(self, value: object, path: str) -> None:
        """Check the limits of a value that already has the right type."""

    def fits(self, value: object) -> bool:
        """True only if :meth:`check` passes (see the class docstring)."""
        return False

    def describe(self) -> str:
        """One line for the docs: type and limits."""
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Spec):
    """Text: ``min_len..max_len`` characters (Unicode code points), no control characters.

    A one-line str (``multiline=False``) also refuses TAB, LF, CR, U+2028 and U+2029.
    """

    min_len: int
    max_len: int
    multiline: bool = False
    TYPE: ClassVar[str] = "str"

    def accepts_type(self, value: object) -> bool:
        return isinstance(value, str)

    def fits(self, value: object) -> bool:
        return (
            type(value) is str
            and self.min_len <= len(value) <= self.max_len
            and _clean(value, self.multiline)
        )

    def check_limits(self, value: object, path: str) -> None:
        assert isinstance(value, str)
        n = len(value)
        if n < self.min_len:
            if self.min_len == 1:
                raise BadBody(f"{path}: must not be empty")
            raise BadBody(f"{path}: at least {self.min_len:,} characters, got {n:,}")
        if n > self.max_len:
            raise BadBody(f"{path}: at most {self.max_len:,} characters, got {n:,}")
        bad = (_TEXT_BAD if self.multiline else _LINE_BAD).search(value)
        if bad is not None:
            raise BadBody(
                f"{path}: character U+{ord(bad.group()):04X} at index {bad.start()} "
                f"is not allowed in {'text' if self.multiline else 'a one-line str'}"
            )

    def describe(self) -> str:
        kind = "multi-line" if self.multiline else "one line"
        return f"str, {_range(self.min_len, self.max_len, 'chars')}, {kind}"


@dataclass(frozen=True)
class Pattern(Spec):
    """A str of at most ``max_len`` characters that matches ``regex`` in full."""

    regex: str
    max_len: int
    meaning: str
    TYPE: ClassVar[str] = "str"
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.regex))

    def accepts_type(self, value: object) -> bool:
        return isinstance(value, str)

    def fits(self, value: object) -> bool:
        return (
            type(value) is str
            and len(value) <= self.max_len
            and self._compiled.fullmatch(value) is not None
        )

    def check_limits(self, value: object, path: str) -> None:
        assert isinstance(value, str)
        if len(value) > self.max_len:
            raise BadBody(f"{path}: at most {self.max_len} characters, got {len(value):,}")
        if self._compiled.fullmatch(value) is None:
            raise BadBody(
                f"{path}: must be {self.meaning} matching {self.regex}, got {_show(value)}"
            )

    def describe(self) -> str:
        return f"str, {self.meaning}: `{self.regex}`, at most {self.max_len} chars"


@dataclass(frozen=True)
class Enum(Spec):
    """A str that is exactly one of ``values`` (case-sensitive)."""

    values: tuple[str, ...]
    TYPE: ClassVar[str] = "str"

    def accepts_type(self, value: object) -> bool:
        return isinstance(value, str)

    def fits(self, value: object) -> bool:
        return type(value) is str and value in self.values

    def check_limits(self, value: object, path: str) -> None:
        if value not in self.values:
            raise BadBody(f"{path}: must be one of {', '.join(self.values)}; got {_show(value)}")

    def describe(self) -> str:
        return "str, one of " + " / ".join(f"`{v}`" for v in self.values)


@dataclass(frozen=True)
class Int(Spec):
    """An integer in ``lo..hi`` inclusive. A bool is not an int."""

    lo: int
    hi: int
    TYPE: ClassVar[str] = "int"

    def accepts_type(self, value: object) -> bool:
        return _is_int(value)

    def fits(self, value: object) -> bool:
        return type(value) is int and self.lo <= value <= self.hi

    def check_limits(self, value: object, path: str) -> None:
        assert isinstance(value, int)
        if not self.lo <= value <= self.hi:
            raise BadBody(f"{path}: must be in {self.lo:,}..{self.hi:,}, got {_show(value)}")

    def describe(self) -> str:
        hi = "2^63-1" if self.hi == MS_MAX else f"{self.hi:,}"
        return f"int, {self.lo:,}..{hi}"


@dataclass(frozen=True)
class Bin(Spec):
    """Bytes of exactly ``size`` bytes."""

    size: int = 32
    TYPE: ClassVar[str] = "bin"

    def accepts_type(self, value: object) -> bool:
        return isinstance(value, bytes)

    def fits(self, value: object) -> bool:
        return type(value) is bytes and len(value) == self.size

    def check_limits(self, value: object, path: str) -> None:
        assert isinstance(value, bytes)
        if len(value) != self.size:
            raise BadBody(f"{path}: must be exactly {self.size} bytes, got {len(value)}")

    def describe(self) -> str:
        return f"bin({self.size})"


@dataclass(frozen=True)
class Nil(Spec):
    """nil (Python ``None``)."""

    TYPE: ClassVar[str] = "nil"

    def accepts_type(self, value: object) -> bool:
        return value is None

    def fits(self, value: object) -> bool:
        return value is None

    def describe(self) -> str:
        return "nil"


@dataclass(frozen=True)
class OneOf(Spec):
    """A value of any of ``options``, which must all have different types."""

    options: tuple[Spec, ...]

    def type_name(self) -> str:
        return " or ".join(o.type_name() for o in self.options)

    def accepts_type(self, value: object) -> bool:
        return any(o.accepts_type(value) for o in self.options)

    def fits(self, value: object) -> bool:
        # The option check would pick: the first that takes the value's type.
        for option in self.options:
            if option.accepts_type(value):
                return option.fits(value)
        return False

    def check_limits(self, value: object, path: str) -> None:
        for option in self.options:
            if option.accepts_type(value):
                option.check_limits(value, path)
                return

    def describe(self) -> str:
        return " | ".join(f"({o.describe()})" for o in self.options)


@dataclass(frozen=True)
class ListOf(Spec):
    """An array of ``min_len..max_len`` items, each matching ``item``.

    With ``distinct`` no two items may be equal (compared as values: a str and a
    bin of the same bytes are different).
    """

    item: Spec
    min_len: int
    max_len: int
    distinct: bool = False
    TYPE: ClassVar[str] = "list"

    def accepts_type(self, value: object) -> bool:
        return isinstance(value, (list, tuple))

    def fits(self, value: object) -> bool:
        if type(value) is not list and type(value) is not tuple:
            return False
        if not self.min_len <= len(value) <= self.max_len:
            return False
        fits = self.item.fits
        if not all(fits(item) for item in value):
            return False
        return not self.distinct or len({(type(v), v) for v in value}) == len(value)

    def check_limits(self, value: object, path: str) -> None:
        assert isinstance(value, (list, tuple))
        n = len(value)
        if not self.min_len <= n <= self.max_len:
            raise BadBody(
                f"{path}: must have {_range(self.min_len, self.max_len, 'items')}, got {n:,}"
            )
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")
        if self.distinct:
            # Items are str or bytes here (checked above), so they are hashable; key by
            # type so that equal-looking values of different types stay apart.
            seen: dict[tuple[type, object], int] = {}
            for i, item in enumerate(value):
                key = (type(item), item)
                if key in seen:
                    raise BadBody(f"{path}[{i}]: repeats item {seen[key]} ({_show(item)})")
                seen[key] = i

    def describe(self) -> str:
        what = f"list of {_range(self.min_len, self.max_len)} × ({self.item.describe()})"
        return what + (", distinct" if self.distinct else "")


@dataclass(frozen=True)
class Field:
    """One key of a map: its spec, whether it must be present, and a note for the docs."""

    name: str
    spec: Spec
    required: bool = True
    note: str = ""


class Rule:
    """A rule across several fields of one map, checked after every field passed."""

    def check(self, value: Mapping[str, object], path: str) -> None:
        raise NotImplementedError

    def holds(self, value: Mapping[str, object]) -> bool:
        """True when :meth:`check` passes (it is called only on maps whose fields fit)."""
        try:
            self.check(value, "")
        except BadBody:
            return False
        return True

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Ordered(Rule):
    """``first < second`` (or ``<=`` when not ``strict``), both int fields of the map."""

    first: str
    second: str
    strict: bool = True

    def check(self, value: Mapping[str, object], path: str) -> None:
        a, b = value.get(self.first), value.get(self.second)
        if not (_is_int(a) and _is_int(b)):
            return  # an absent optional field: nothing to compare
        assert isinstance(a, int) and isinstance(b, int)
        if a > b or (self.strict and a == b):
            op = "<" if self.strict else "<="
            raise BadBody(
                f"{path}.{self.second}: {self.first} {op} {self.second} must hold, "
                f"got {a:,} and {b:,}"
            )

    def describe(self) -> str:
        return f"`{self.first}` {'<' if self.strict else '<='} `{self.second}`"


@dataclass(frozen=True)
class CountByType(Rule):
    """The number of items of list field ``items`` depends on the enum field ``by``."""

    items: str
    by: str
    counts: tuple[tuple[str, int, int], ...]

    def check(self, value: Mapping[str, object], path: str) -> None:
        by, items = value.get(self.by), value.get(self.items)
        assert isinstance(items, (list, tuple))
        for name, lo, hi in self.counts:
            if by == name and not lo <= len(items) <= hi:
                raise BadBody(
                    f"{path}.{self.items}: a {self.by} `{name}` needs "
                    f"{_range(lo, hi, 'items')}, got {len(items):,}"
                )

    def describe(self) -> str:
        parts = [f"`{name}`: {_range(lo, hi)}" for name, lo, hi in self.counts]
        return f"number of `{self.items}` by `{self.by}`: " + "; ".join(parts)


@dataclass(frozen=True)
class MapOf(Spec):
    """A map with exactly the listed keys: required ones present, no others."""

    name: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    TYPE: ClassVar[str] = "map"

    _known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_known", frozenset(f.name for f in self.fields))

    def accepts_type(self, value: object) -> bool:
        return isinstance(value, Mapping)

    def fits(self, value: object) -> bool:
        if type(value) is not dict:
            return False
        known = self._known
        for key in value:
            if type(key) is not str or key not in known:
                return False
        for f in self.fields:
            if f.name in value:
                if not f.spec.fits(value[f.name]):
                    return False
            elif f.required:
                return False
        return all(rule.holds(value) for rule in self.rules)

    def check_limits(self, value: object, path: str) -> None:
        assert isinstance(value, Mapping)
        known = {f.name for f in self.fields}
        for key in value:
            if not isinstance(key, str):
                raise BadBody(f"{path}: map key {_show(key)} is not a str")
        unknown = sorted(
            (k for k in value if k not in known), key=lambda k: k.encode("utf-8", "surrogatepass")
        )
        if unknown:
            raise BadBody(f"{path}.{unknown[0]}: unknown field")
        for f in self.fields:
            if f.name not in value:
                if f.required:
                    raise BadBody(f"{path}.{f.name}: required field is missing")
                continue
            f.spec.check(value[f.name], f"{path}.{f.name}")
        for rule in self.rules:
            rule.check(value, path)

    def describe(self) -> str:
        return f"map `{self.name}` (below)"


@dataclass(frozen=True)
class Refs:
    """How many refs a kind takes, what they are, and whether they must differ."""

    min: int
    max: int
    meaning: str
    distinct: bool = False

    def check(self, refs: Sequence[bytes], path: str) -> None:
        n = len(refs)
        if not self.min <= n <= self.max:
            raise BadBody(
                f"{path}: refs must be {_range(self.min, self.max)} ({self.meaning}), got {n}"
            )
        if self.distinct and len(set(refs)) != n:
            raise BadBody(f"{path}: refs must be distinct ({self.meaning})")

    def describe(self) -> str:
        if self.max == 0:
            return "none"
        count = _range(self.min, self.max)
        return f"{count}: {self.meaning}" + ("; distinct" if self.distinct else "")


@dataclass(frozen=True)
class KindSchema:
    """A kind's body (a :class:`MapOf` named after the kind) and its refs rule."""

    kind: str
    author: str
    refs: Refs
    body: MapOf
    editable: bool
    note: str = ""

    def check(self, body: object, refs: Sequence[bytes]) -> None:
        self.refs.check(refs, self.kind)
        if self.body.fits(body):
            return
        if not isinstance(body, Mapping):
            raise BadBody(f"{self.kind}: body must be a map, got {_type_name(body)}")
        self.body.check_limits(body, self.kind)

    def nested(self) -> list[MapOf]:
        """The maps inside the body (survey questions), for the docs."""
        found: list[MapOf] = []

        def walk(spec: Spec) -> None:
            if isinstance(spec, MapOf):
                found.append(spec)
                for f in spec.fields:
                    walk(f.spec)
            elif isinstance(spec, ListOf):
                walk(spec.item)
            elif isinstance(spec, OneOf):
                for option in spec.options:
                    walk(option)

        for f in self.body.fields:
            walk(f.spec)
        return found


# --------------------------------------------------------------------------- the table

MS_MAX = (1 << 63) - 1
U32_MAX = (1 << 32) - 1

TITLE = Str(1, 200)
NAME = Str(1, 200)
TEXT = Str(1, 20_000, multiline=True)
TEXT_OR_EMPTY = Str(0, 20_000, multiline=True)
REASON = Str(1, 2_000, multiline=True)
REASON_OR_EMPTY = Str(0, 2_000, multiline=True)
LANG = Pattern(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", 35, "a lowercase BCP 47 language tag")
COUNTRY = Pattern(r"[A-Z]{2}", 2, "an ISO 3166-1 alpha-2 code, uppercase")
CATEGORY = Pattern(r"[a-z][a-z0-9_]{0,31}", 32, "a lowercase token")
MS = Int(0, MS_MAX)
COUNT = Int(0, U32_MAX)
ID = Bin(32)
TAG = Str(1, 40)
OPTION = Str(1, 200)
EDIT_OF = Field(
    "edit_of",
    ID,
    required=False,
    note="id of the first version that this message replaces (same author)",
)

MAX_QUESTIONS = 100
MAX_OPTIONS = 50
MAX_SCALE = 11

QUESTION = MapOf(
    "question",
    (
        Field("text", Str(1, 2_000, multiline=True)),
        Field("type", Enum(("scale", "choice", "text"))),
        Field(
            "options",
            ListOf(OPTION, 0, MAX_OPTIONS, distinct=True),
            note="scale: the labels of its points, lowest first; choice: the choices; text: empty",
        ),
    ),
    (
        CountByType(
            "options", "type", (("scale", 2, MAX_SCALE), ("choice", 2, MAX_OPTIONS), ("text", 0, 0))
        ),
    ),
)

ANSWER = OneOf((Int(0, MAX_OPTIONS - 1), Str(1, 20_000, multiline=True), Nil()))


def _kind(
    kind: str,
    author: str,
    refs: Refs,
    fields: tuple[Field, ...],
    *,
    editable: bool = False,
    rules: tuple[Rule, ...] = (),
    note: str = "",
) -> KindSchema:
    if editable:
        fields = (*fields, EDIT_OF)
    return KindSchema(kind, author, refs, MapOf(kind, fields, rules), editable, note)


NO_REFS = Refs(0, 0, "none")

_TABLE = (
    _kind(
        "community",
        "C",
        NO_REFS,
        (
            Field("name", NAME),
            Field("country", COUNTRY),
            Field("region", Str(0, 200)),
            Field(
                "languages", ListOf(LANG, 1, 16, distinct=True), note="the first is the main one"
            ),
            Field("about", TEXT_OR_EMPTY),
        ),
        note="the newest wins",
    ),
    _kind(
        "grant",
        "C or admin",
        NO_REFS,
        (
            Field("member", ID, note="the key that gets the role"),
            Field("role", Enum(("member", "moderator", "official", "admin"))),
            Field(
                "until", MS, required=False, note="ms; the role ends at this time; absent: no end"
            ),
        ),
    ),
    _kind("revoke", "C or admin", Refs(1, 1, "[grant]"), (Field("reason", REASON_OR_EMPTY),)),
    _kind(
        "topic",
        "member",
        NO_REFS,
        (
            Field("title", TITLE),
            Field("text", TEXT_OR_EMPTY),
            Field("lang", LANG),
            Field("tags", ListOf(TAG, 0, 16, distinct=True)),
            Field("scope", Enum(("local", "regional", "national", "european"))),
        ),
        editable=True,
    ),
    _kind(
        "proposal",
        "member",
        Refs(1, 1, "[topic]"),
        (
            Field("title", TITLE),
            Field("problem", TEXT),
            Field("solution", TEXT),
            Field("lang", LANG),
            Field("closes", MS, note="ms; votes count until then"),
        ),
        editable=True,
    ),
    _kind(
        "vote",
        "member",
        Refs(1, 1, "[proposal]"),
        (Field("choice", Enum(("yes", "no", "abstain"))),),
        note="each author's newest before `closes` counts",
    ),
    _kind(
        "tally",
        "C or official",
        Refs(1, 1, "[proposal]"),
        (
            Field("yes", COUNT),
            Field("no", COUNT),
            Field("abstain", COUNT),
            Field("ballots", ID, note="SHA-256 of the sorted counted vote ids"),
        ),
    ),
    _kind(
        "story",
        "member",
        Refs(0, 1, "[topic] or none"),
        (Field("title", TITLE), Field("text", TEXT), Field("lang", LANG)),
        editable=True,
    ),
    _kind(
        "comment",
        "member",
        Refs(1, 1, "[target]"),
        (Field("text", TEXT), Field("lang", LANG)),
        editable=True,
    ),
    _kind("report", "member", Refs(1, 1, "[target]"), (Field("reason", REASON),)),
    _kind("hide", "moderator", Refs(1, 1, "[target]"), (Field("reason", REASON),)),
    _kind("unhide", "moderator", Refs(1, 1, "[target]"), (Field("reason", REASON),)),
    _kind(
        "erase",
        "the target's author, or admin",
        Refs(1, 1, "[target]"),
        (),
        note="body is the empty map; every node drops the target's body and keeps its skeleton",
    ),
    _kind(
        "petition",
        "member",
        Refs(0, 1, "[topic] or none"),
        (
            Field("title", TITLE),
            Field("text", TEXT),
            Field("goal", Int(1, U32_MAX), note="signatures wanted"),
            Field("closes", MS, note="ms"),
        ),
        editable=True,
    ),
    _kind(
        "sign",
        "member",
        Refs(1, 1, "[petition]"),
        (),
        note="body is the empty map; one per author",
    ),
    _kind(
        "survey",
        "official",
        NO_REFS,
        (
            Field("title", TITLE),
            Field("intro", TEXT_OR_EMPTY),
            Field("questions", ListOf(QUESTION, 1, MAX_QUESTIONS)),
            Field("opens", MS, note="ms"),
            Field("closes", MS, note="ms"),
        ),
        editable=True,
        rules=(Ordered("opens", "closes", strict=True),),
    ),
    _kind(
        "answer",
        "member",
        Refs(1, 1, "[survey]"),
        (
            Field(
                "answers",
                ListOf(ANSWER, 1, MAX_QUESTIONS),
                note="one per question, in order: int = 0-based option index (scale, "
                "choice), str = text answer, nil = skipped",
            ),
        ),
        note="each author's newest counts; matching answers to questions is a view's job",
    ),
    _kind(
        "panel",
        "C or official",
        Refs(0, 1, "[topic] or none"),
        (
            Field("name", NAME),
            Field("seats", Int(1, 1_000)),
            Field("roll", ID, note="SHA-256 of the sorted eligible keys"),
            Field("commit", ID, note="SHA-256 of the secret revealed by the draw"),
        ),
    ),
    _kind(
        "draw",
        "C or official",
        Refs(2, 16, "[panel, entropy ids…], at least one entropy id", distinct=True),
        (
            Field("secret", ID, note="the secret whose SHA-256 is the panel's commit"),
            Field("selected", ListOf(ID, 0, 1_000, distinct=True), note="the selected keys"),
        ),
        note="re-computable by any node",
    ),
    _kind(
        "meeting",
        "official",
        Refs(0, 1, "[topic] or none"),
        (
            Field("title", TITLE),
            Field("starts", MS, note="ms"),
            Field("ends", MS, note="ms"),
            Field("place", Str(1, 200)),
            Field("agenda", TEXT),
        ),
        editable=True,
        rules=(Ordered("starts", "ends", strict=False),),
    ),
    _kind("minutes", "official", Refs(1, 1, "[meeting]"), (Field("text", TEXT),), editable=True),
    _kind(
        "infokit",
        "official",
        NO_REFS,
        (
            Field("title", TITLE),
            Field("text", TEXT),
            Field(
                "category",
                CATEGORY,
                note="known: `emergency`, `health`, `contacts`; others are shown as they are",
            ),
            Field("lang", LANG),
        ),
        editable=True,
        note="pinned",
    ),
)

#: Every known kind's schema, in the order of PROTOCOL.md section 4.
SCHEMAS: Mapping[str, KindSchema] = MappingProxyType({s.kind: s for s in _TABLE})

#: The kinds whose bodies are checked; any other kind is stored but not shown.
KNOWN_KINDS: frozenset[str] = frozenset(SCHEMAS)

#: Kinds that take the optional ``edit_of`` field.
EDITABLE_KINDS: frozenset[str] = frozenset(s.kind for s in _TABLE if s.editable)


def check_body(kind: str, body: Mapping[str, object], refs: Sequence[bytes]) -> None:
    """Raise :class:`BadBody` unless ``body`` and the number of ``refs`` fit ``kind``.

    The message names the offending field as ``kind.field`` (``survey.questions[2].type``).
    A kind not in :data:`KNOWN_KINDS` passes untouched.
    """
    schema = SCHEMAS.get(kind)
    if schema is None:
        return
    schema.check(body, refs)


# --------------------------------------------------------------------------- docs

GENERAL_RULES = """\
Rules for every known kind:

- The body is a map. It holds every required field of its kind, any of the optional
  ones, and nothing else: an unknown key is `bad_body` (new fields come with new kinds).
  A kind whose body is "—" takes the empty map `{}`.
- The refs count must be in the kind's range (the envelope already allows 0..16
  bin(32) ids); `draw` refs must also be pairwise distinct. What the refs point at
  (a proposal, a grant …) is checked by the views, not here.
- No field of a v1 body is a bool, and none may be nil except a skipped answer in
  `answer.answers`. An int is never a bool.
- A str length is counted in characters: Unicode code points (scalar values), not
  bytes, not UTF-16 units, not grapheme clusters. "é" as U+00E9 is 1 character, as
  "e" + U+0301 it is 2; text is not normalized and need not be NFC. Whitespace is
  neither trimmed nor checked.
- No str holds a control character: U+0000..U+001F, U+007F..U+009F, except that
  multi-line text may hold TAB (U+0009), LF (U+000A) and CR (U+000D). A one-line str
  also refuses U+2028 and U+2029. (A surrogate cannot occur: bodies are valid UTF-8.)
- Patterns must match the whole str (no trailing newline). `lang` is a BCP 47 tag
  written in lowercase (`pt-br`, not `pt-BR`), so that equal tags are equal strings;
  its subtags are not looked up in the IANA registry. `country` is two uppercase ASCII
  letters; it is not looked up in the ISO list (which changes), so `XK` passes.
- Times (`closes`, `opens`, `starts`, `ends`, `until`) are ms since the Unix epoch, UTC,
  as ints 0..2^63-1.
- A list marked distinct has no two equal items (exact equality of str or bytes).
- Editable kinds (`topic`, `proposal`, `story`, `comment`, `petition`, `survey`,
  `meeting`, `minutes`, `infokit`) take an optional `edit_of`: bin(32), the id of the
  first version of the thing that this message replaces, never of an intermediate
  edit. The first version has no `edit_of`. That the original exists, has the same kind
  and the same author, and which version is newest, is for the views.
- Cross-field rules (`survey`: opens < closes; `meeting`: starts <= ends;
  survey questions: options count by type) are part of the schema: a body that breaks
  one is `bad_body`.
- Only one body is checked: whether `answers` fit the survey's questions, whether a
  `draw` selection re-computes, whether a `tally` recounts, are for the views.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _fields_table(spec: MapOf) -> list[str]:
    if not spec.fields:
        return ["Body: the empty map `{}`."]
    lines = ["| field | required | type and limits | note |", "|---|---|---|---|"]
    for f in spec.fields:
        req = "yes" if f.required else "optional"
        lines.append(f"| `{f.name}` | {req} | {_cell(f.spec.describe())} | {_cell(f.note)} |")
    if spec.rules:
        lines.append("")
        lines.extend(f"Rule: {r.describe()}." for r in spec.rules)
    return lines


def schema_markdown() -> str:
    """The body schemas of every known kind as a markdown section (for docs/protocol.md)."""
    out = ["## Kinds: body schemas", "", GENERAL_RULES]
    out += ["| kind | author | refs | editable | fields |", "|---|---|---|---|---|"]
    for s in SCHEMAS.values():
        names = ", ".join(f"`{f.name}`" for f in s.body.fields) or "— (`{}`)"
        out.append(
            f"| `{s.kind}` | {s.author} | {_cell(s.refs.describe())} | "
            f"{'yes' if s.editable else 'no'} | {names} |"
        )
    for s in SCHEMAS.values():
        out += ["", f"### `{s.kind}`", ""]
        out.append(
            f"Author: {s.author}. Refs: {s.refs.describe()}."
            + (f" {s.note[0].upper()}{s.note[1:]}." if s.note else "")
        )
        out.append("")
        out += _fields_table(s.body)
        for nested in s.nested():
            out += ["", f"Map `{nested.name}`:", ""]
            out += _fields_table(nested)
    return "\n".join(out) + "\n"
