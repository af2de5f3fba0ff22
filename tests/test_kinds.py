"""Body schemas of the known kinds (protocol/kinds.py, PROTOCOL.md section 4).

The expected limits below are written out by hand, apart from the schema table, so a
change to a consensus rule in the code shows up here as a failing test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import BadBody
from protocol.kinds import (
    _LINE_BAD,
    _TEXT_BAD,
    EDITABLE_KINDS,
    KNOWN_KINDS,
    SCHEMAS,
    Bin,
    Enum,
    Int,
    ListOf,
    MapOf,
    Nil,
    OneOf,
    Pattern,
    Spec,
    Str,
    _clean,
    check_body,
    schema_markdown,
)

ID = bytes(range(32))
ID2 = bytes(range(1, 33))
ID3 = bytes(range(2, 34))
MS_MAX = 2**63 - 1
U32_MAX = 2**32 - 1


def ids(n: int) -> tuple[bytes, ...]:
    return tuple(bytes([i]) * 32 for i in range(n))


# --------------------------------------------------------------------------- fixtures

Q_SCALE = {"text": "How clear was the council?", "type": "scale", "options": ["bad", "ok", "good"]}
Q_CHOICE = {"text": "Best day?", "type": "choice", "options": ["Mon", "Tue"]}
Q_TEXT = {"text": "Anything else?\nTell us.", "type": "text", "options": []}

MINIMAL: dict[str, dict[str, Any]] = {
    "community": {"name": "Gent", "country": "BE", "region": "", "languages": ["nl"], "about": ""},
    "grant": {"member": ID, "role": "member"},
    "revoke": {"reason": ""},
    "topic": {"title": "Schools", "text": "", "lang": "nl", "tags": [], "scope": "local"},
    "proposal": {"title": "T", "problem": "P", "solution": "S", "lang": "en", "closes": 0},
    "vote": {"choice": "yes"},
    "tally": {"yes": 0, "no": 0, "abstain": 0, "ballots": ID},
    "story": {"title": "T", "text": "x", "lang": "fr"},
    "comment": {"text": "x", "lang": "de"},
    "report": {"reason": "spam"},
    "hide": {"reason": "spam"},
    "unhide": {"reason": "appeal granted"},
    "erase": {},
    "petition": {"title": "T", "text": "x", "goal": 1, "closes": 0},
    "sign": {},
    "survey": {"title": "T", "intro": "", "questions": [Q_TEXT], "opens": 0, "closes": 1},
    "answer": {"answers": [None]},
    "panel": {"name": "N", "seats": 1, "roll": ID, "commit": ID2},
    "draw": {"secret": ID, "selected": []},
    "meeting": {"title": "T", "starts": 5, "ends": 5, "place": "online", "agenda": "1."},
    "minutes": {"text": "x"},
    "infokit": {"title": "T", "text": "x", "category": "emergency", "lang": "it"},
}

FULL: dict[str, dict[str, Any]] = {
    "community": {
        "name": "Leuven",
        "country": "BE",
        "region": "Vlaams-Brabant",
        "languages": ["nl", "fr", "de", "en-gb"],
        "about": "Stad aan de Dijle.\n",
    },
    "grant": {"member": ID, "role": "admin", "until": 1_900_000_000_000},
    "revoke": {"reason": "term ended"},
    "topic": {
        "title": "Écoles",
        "text": "Line 1\r\nLine 2\tTabbed",
        "lang": "fr-be",
        "tags": ["schools", "éducation"],
        "scope": "european",
        "edit_of": ID2,
    },
    "proposal": {
        "title": "More bike lanes",
        "problem": "Traffic",
        "solution": "Lanes",
        "lang": "en",
        "closes": 1_800_000_000_000,
        "edit_of": ID2,
    },
    "vote": {"choice": "abstain"},
    "tally": {"yes": 10, "no": 3, "abstain": 1, "ballots": ID},
    "story": {"title": "T", "text": "Once", "lang": "pl", "edit_of": ID2},
    "comment": {"text": "👍", "lang": "sl", "edit_of": ID2},
    "report": {"reason": "abuse"},
    "hide": {"reason": "abuse"},
    "unhide": {"reason": "mistake"},
    "erase": {},
    "petition": {"title": "T", "text": "x", "goal": 500, "closes": 1, "edit_of": ID2},
    "sign": {},
    "survey": {
        "title": "Evaluation 2026",
        "intro": "Please answer.",
        "questions": [Q_SCALE, Q_CHOICE, Q_TEXT],
        "opens": 1_000,
        "closes": 2_000,
        "edit_of": ID2,
    },
    "answer": {"answers": [2, 0, "Thanks", None]},
    "panel": {"name": "Climate panel", "seats": 30, "roll": ID, "commit": ID2},
    "draw": {"secret": ID, "selected": [ID2, ID3]},
    "meeting": {
        "title": "Assembly",
        "starts": 1_000,
        "ends": 2_000,
        "place": "Town hall",
        "agenda": "1. Budget\n2. Parks",
        "edit_of": ID2,
    },
    "minutes": {"text": "Decided: yes.", "edit_of": ID2},
    "infokit": {
        "title": "Flood",
        "text": "Go up.",
        "category": "emergency",
        "lang": "nl",
        "edit_of": ID2,
    },
}

#: (min, max) refs per kind, written out from PROTOCOL.md section 4.
REFS: dict[str, tuple[int, int]] = {
    "community": (0, 0),
    "grant": (0, 0),
    "revoke": (1, 1),
    "topic": (0, 0),
    "proposal": (1, 1),
    "vote": (1, 1),
    "tally": (1, 1),
    "story": (0, 1),
    "comment": (1, 1),
    "report": (1, 1),
    "hide": (1, 1),
    "unhide": (1, 1),
    "erase": (1, 1),
    "petition": (0, 1),
    "sign": (1, 1),
    "survey": (0, 0),
    "answer": (1, 1),
    "panel": (0, 1),
    "draw": (2, 16),
    "meeting": (0, 1),
    "minutes": (1, 1),
    "infokit": (0, 0),
}

#: Every str field with free text: (min chars, max chars, multi-line).
STR_LIMITS: dict[tuple[str, str], tuple[int, int, bool]] = {
    ("community", "name"): (1, 200, False),
    ("community", "region"): (0, 200, False),
    ("community", "about"): (0, 20_000, True),
    ("revoke", "reason"): (0, 2_000, True),
    ("topic", "title"): (1, 200, False),
    ("topic", "text"): (0, 20_000, True),
    ("proposal", "title"): (1, 200, False),
    ("proposal", "problem"): (1, 20_000, True),
    ("proposal", "solution"): (1, 20_000, True),
    ("story", "title"): (1, 200, False),
    ("story", "text"): (1, 20_000, True),
    ("comment", "text"): (1, 20_000, True),
    ("report", "reason"): (1, 2_000, True),
    ("hide", "reason"): (1, 2_000, True),
    ("unhide", "reason"): (1, 2_000, True),
    ("petition", "title"): (1, 200, False),
    ("petition", "text"): (1, 20_000, True),
    ("survey", "title"): (1, 200, False),
    ("survey", "intro"): (0, 20_000, True),
    ("panel", "name"): (1, 200, False),
    ("meeting", "title"): (1, 200, False),
    ("meeting", "place"): (1, 200, False),
    ("meeting", "agenda"): (1, 20_000, True),
    ("minutes", "text"): (1, 20_000, True),
    ("infokit", "title"): (1, 200, False),
    ("infokit", "text"): (1, 20_000, True),
}

#: Every int field: (lo, hi).
INT_LIMITS: dict[tuple[str, str], tuple[int, int]] = {
    ("grant", "until"): (0, MS_MAX),
    ("proposal", "closes"): (0, MS_MAX),
    ("tally", "yes"): (0, U32_MAX),
    ("tally", "no"): (0, U32_MAX),
    ("tally", "abstain"): (0, U32_MAX),
    ("petition", "goal"): (1, U32_MAX),
    ("petition", "closes"): (0, MS_MAX),
    ("survey", "opens"): (0, MS_MAX),
    ("survey", "closes"): (0, MS_MAX),
    ("panel", "seats"): (1, 1_000),
    ("meeting", "starts"): (0, MS_MAX),
    ("meeting", "ends"): (0, MS_MAX),
}

#: Every bin(32) field.
BIN_FIELDS = {
    ("grant", "member"),
    ("tally", "ballots"),
    ("panel", "roll"),
    ("panel", "commit"),
    ("draw", "secret"),
    *((k, "edit_of") for k in EDITABLE_KINDS),
}

#: Every enum field and its values.
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("grant", "role"): ("member", "moderator", "official", "admin"),
    ("topic", "scope"): ("local", "regional", "national", "european"),
    ("vote", "choice"): ("yes", "no", "abstain"),
}


def refs_for(kind: str) -> tuple[bytes, ...]:
    return ids(REFS[kind][0])


def ok(kind: str, body: Mapping[str, Any], refs: tuple[bytes, ...] | None = None) -> None:
    check_body(kind, body, refs_for(kind) if refs is None else refs)


def bad(
    kind: str, body: Mapping[str, Any], where: str, refs: tuple[bytes, ...] | None = None
) -> BadBody:
    """Assert BadBody whose message starts with the path ``where``."""
    with pytest.raises(BadBody) as info:
        check_body(kind, body, refs_for(kind) if refs is None else refs)
    assert str(info.value).startswith(where), str(info.value)
    assert info.value.code == "bad_body"
    return info.value


def with_(kind: str, **changes: Any) -> dict[str, Any]:
    body = dict(FULL[kind])
    body.update(changes)
    return body


# --------------------------------------------------------------------------- the table


def test_known_kinds_are_section_4() -> None:
    assert KNOWN_KINDS == set(MINIMAL) == set(FULL) == set(REFS)
    assert list(SCHEMAS) == list(REFS)  # PROTOCOL.md order


def test_editable_kinds() -> None:
    assert {
        "topic",
        "proposal",
        "story",
        "comment",
        "petition",
        "meeting",
        "minutes",
        "infokit",
        "survey",
    } == EDITABLE_KINDS


def test_expected_tables_cover_every_field() -> None:
    """Every field of every kind is in exactly one of the hand-written tables above."""
    for kind, schema in SCHEMAS.items():
        for f in schema.body.fields:
            key = (kind, f.name)
            n = (
                (key in STR_LIMITS)
                + (key in INT_LIMITS)
                + (key in BIN_FIELDS)
                + (key in ENUMS)
                + (f.name in {"lang", "country", "languages", "tags", "category"})
                + (key in {("survey", "questions"), ("answer", "answers"), ("draw", "selected")})
            )
            assert n == 1, key


@pytest.mark.parametrize("kind", sorted(KNOWN_KINDS))
def test_minimal_and_full_pass(kind: str) -> None:
    ok(kind, MINIMAL[kind])
    ok(kind, FULL[kind])
    names = {f.name for f in SCHEMAS[kind].body.fields}
    required = {f.name for f in SCHEMAS[kind].body.fields if f.required}
    assert set(FULL[kind]) == names
    assert set(MINIMAL[kind]) == required


@pytest.mark.parametrize("kind", sorted(KNOWN_KINDS))
def test_each_required_field_missing_fails(kind: str) -> None:
    for f in SCHEMAS[kind].body.fields:
        body = dict(FULL[kind])
        del body[f.name]
        if f.required:
            e = bad(kind, body, f"{kind}.{f.name}:")
            assert "missing" in str(e)
        else:
            ok(kind, body)


@pytest.mark.parametrize("kind", sorted(KNOWN_KINDS))
def test_unknown_field_fails(kind: str) -> None:
    bad(kind, with_(kind, extra=1), f"{kind}.extra: unknown field")
    bad(kind, {**MINIMAL[kind], "Title": "x"}, f"{kind}.Title: unknown field")
    if kind not in EDITABLE_KINDS:
        bad(kind, with_(kind, edit_of=ID), f"{kind}.edit_of: unknown field")


@pytest.mark.parametrize("kind", sorted(KNOWN_KINDS))
def test_body_not_a_map_or_bad_keys(kind: str) -> None:
    for body in ([], None, "x", b"", 0, [("a", 1)]):
        bad(kind, body, f"{kind}: body must be a map")  # type: ignore[arg-type]
    weird: dict[Any, Any] = dict(FULL[kind])
    weird[1] = "x"
    bad(kind, weird, f"{kind}: map key 1 is not a str")
    del weird[1]
    weird[b"k"] = "x"
    bad(kind, weird, f"{kind}: map key b'k' is not a str")


SAMPLES: dict[str, list[object]] = {
    "bool": [True, False],
    "nil": [None],
    "int": [0, 1, -1],
    "str": ["", "x"],
    "bin": [b"", ID],
    "list": [[], [ID]],
    "map": [{}, {"text": "x"}],
    "float": [0.0, 1.5],
    "tuple-of-pairs": [bytearray(ID)],
}


def type_words(spec: Spec) -> set[str]:
    return set(spec.type_name().split(" or ")) - {"or"}


@pytest.mark.parametrize("kind", sorted(KNOWN_KINDS))
def test_each_field_wrong_type_fails(kind: str) -> None:
    for f in SCHEMAS[kind].body.fields:
        accepted = type_words(f.spec)
        for label, values in SAMPLES.items():
            if label in accepted:
                continue
            for v in values:
                e = bad(kind, with_(kind, **{f.name: v}), f"{kind}.{f.name}:")
                assert "must be" in str(e)


def test_type_words_match_python_types() -> None:
    assert type_words(SCHEMAS["answer"].body.fields[0].spec) == {"list"}
    assert type_words(Str(0, 1)) == {"str"}
    assert type_words(OneOf((Int(0, 1), Nil()))) == {"int", "nil"}


def test_bool_is_never_an_int() -> None:
    bad("tally", with_("tally", yes=True), "tally.yes: must be int, got bool")
    bad("panel", with_("panel", seats=True), "panel.seats: must be int, got bool")
    bad("answer", {"answers": [True]}, "answer.answers[0]: must be int or str or nil, got bool")
    bad("answer", {"answers": [False]}, "answer.answers[0]:")


# --------------------------------------------------------------------------- str limits

# 2-, 3- and 4-byte UTF-8 characters: limits count characters, not bytes.
WIDE = ["é", "€", "😀"]


@pytest.mark.parametrize(("kind", "name"), sorted(STR_LIMITS))
def test_str_limits_in_characters(kind: str, name: str) -> None:
    lo, hi, multiline = STR_LIMITS[(kind, name)]
    spec = next(f.spec for f in SCHEMAS[kind].body.fields if f.name == name)
    assert spec == Str(lo, hi, multiline=multiline)
    for ch in WIDE:
        ok(kind, with_(kind, **{name: ch * hi}))
        e = bad(kind, with_(kind, **{name: ch * (hi + 1)}), f"{kind}.{name}:")
        assert f"at most {hi:,} characters, got {hi + 1:,}" in str(e)
        ok(kind, with_(kind, **{name: ch * max(lo, 1)}))
    if lo == 1:
        bad(kind, with_(kind, **{name: ""}), f"{kind}.{name}: must not be empty")
    else:
        ok(kind, with_(kind, **{name: ""}))
    if multiline:
        ok(kind, with_(kind, **{name: "a\tb\nc\r\nd"}))
    else:
        for ch in "\t\n\r\u2028\u2029":
            bad(kind, with_(kind, **{name: f"a{ch}b"}), f"{kind}.{name}: character U+")


CONTROLS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\x7f", "\x80", "\x9f"]


@pytest.mark.parametrize("ch", CONTROLS)
def test_control_characters_fail_everywhere(ch: str) -> None:
    for kind, name in STR_LIMITS:
        e = bad(kind, with_(kind, **{name: f"ab{ch}"}), f"{kind}.{name}:")
        assert f"U+{ord(ch):04X} at index 2" in str(e)
    bad("topic", with_("topic", tags=[f"a{ch}"]), "topic.tags[0]:")
    bad("answer", {"answers": [f"a{ch}"]}, "answer.answers[0]:")
    q = {**Q_CHOICE, "options": ["a", f"b{ch}"]}
    bad("survey", with_("survey", questions=[q]), "survey.questions[0].options[1]:")


def test_near_controls_pass() -> None:
    # U+00A0 (no-break space), U+00AD (soft hyphen), U+200B, U+FEFF are not Cc.
    ok("topic", with_("topic", title="a\u00a0b\u00adc\u200bd\ufeffe"))
    # Combining characters count as their own code points.
    ok("topic", with_("topic", title="e\u0301" * 100))
    bad("topic", with_("topic", title="e\u0301" * 100 + "x"), "topic.title: at most 200")


def test_surrogates_fail() -> None:
    bad("comment", with_("comment", text="a\ud800"), "comment.text: character U+D800")


@pytest.mark.parametrize("multiline", [False, True])
def test_quick_character_test_agrees_with_the_regex(multiline: bool) -> None:
    # Every code point (UTF-8 is self-synchronizing, so one character at a time covers
    # any str): the quick test clears a character only if the regex finds nothing in
    # it, and clears every allowed character outside U+0080..U+00BF.
    regex = _TEXT_BAD if multiline else _LINE_BAD
    for cp in range(0x110000):
        ch = chr(cp)
        bad_char = regex.search(ch) is not None
        if _clean(ch, multiline):
            assert not bad_char, hex(cp)
        else:
            assert bad_char or 0x80 <= cp <= 0xBF, hex(cp)
    assert _clean("a\tb\r\nc", True) and not _clean("a\tb", False)
    assert not _clean("ab\x85", multiline) and _clean("é\u2027\u202a", multiline)


# --------------------------------------------------------------------------- ints, bins, enums


@pytest.mark.parametrize(("kind", "name"), sorted(INT_LIMITS))
def test_int_limits(kind: str, name: str) -> None:
    lo, hi = INT_LIMITS[(kind, name)]
    spec = next(f.spec for f in SCHEMAS[kind].body.fields if f.name == name)
    assert spec == Int(lo, hi)
    pinned = {"opens": 0, "closes": MS_MAX} if kind == "survey" else {}
    pinned |= {"starts": 0, "ends": MS_MAX} if kind == "meeting" else {}
    for v in (lo, hi):
        body = with_(kind, **{**pinned, name: v})
        if kind == "survey" and body["opens"] >= body["closes"]:
            bad(kind, body, "survey.closes: opens < closes")  # the field is fine, the rule not
        else:
            ok(kind, body)
    for v in (lo - 1, hi + 1, -(2**63), 2**64 - 1):
        if lo <= v <= hi:
            continue
        bad(kind, with_(kind, **{**pinned, name: v}), f"{kind}.{name}:")


@pytest.mark.parametrize(("kind", "name"), sorted(BIN_FIELDS))
def test_bin32_fields(kind: str, name: str) -> None:
    ok(kind, with_(kind, **{name: bytes(32)}))
    for n in (0, 31, 33, 64):
        e = bad(kind, with_(kind, **{name: bytes(n)}), f"{kind}.{name}:")
        assert f"exactly 32 bytes, got {n}" in str(e)
    bad(kind, with_(kind, **{name: "00" * 32}), f"{kind}.{name}: must be bin, got str")


@pytest.mark.parametrize(("kind", "name"), sorted(ENUMS))
def test_enums(kind: str, name: str) -> None:
    values = ENUMS[(kind, name)]
    spec = next(f.spec for f in SCHEMAS[kind].body.fields if f.name == name)
    assert spec == Enum(values)
    for v in values:
        ok(kind, with_(kind, **{name: v}))
        bad(kind, with_(kind, **{name: v.upper()}), f"{kind}.{name}: must be one of")
        bad(kind, with_(kind, **{name: v + " "}), f"{kind}.{name}:")
    bad(kind, with_(kind, **{name: ""}), f"{kind}.{name}:")


def test_survey_question_type_enum() -> None:
    for t in ("scale", "choice", "text", "Scale", "number"):
        q = {**Q_CHOICE, "type": t}
        if t in ("scale", "choice"):
            ok("survey", with_("survey", questions=[q]))
        else:
            bad("survey", with_("survey", questions=[q]), "survey.questions[0]")


# --------------------------------------------------------------------------- patterns

GOOD_LANGS = ["nl", "fr", "gsw", "en-gb", "pt-br", "sr-latn-rs", "de-1996", "zh-hant-tw"]
BAD_LANGS = [
    "",
    "e",
    "engl",  # 4 letters
    "EN",
    "en-GB",  # lowercase only
    "pt_br",
    "en-",
    "en--gb",
    "-en",
    "en-abcdefghi",  # subtag over 8
    "x-private",
    "i-klingon",
    "en\n",
    "en ",
    "１２",  # fullwidth digits
    "én",
]


@pytest.mark.parametrize("tag", GOOD_LANGS)
def test_lang_good(tag: str) -> None:
    ok("topic", with_("topic", lang=tag))
    ok("community", with_("community", languages=[tag]))


@pytest.mark.parametrize("tag", BAD_LANGS)
def test_lang_bad(tag: str) -> None:
    bad("topic", with_("topic", lang=tag), "topic.lang:")
    bad("community", with_("community", languages=["nl", tag]), "community.languages[1]:")


def test_lang_length() -> None:
    tag35 = "abc" + "-abcdefgh" * 3 + "-abcd"
    assert len(tag35) == 35
    ok("comment", with_("comment", lang=tag35))
    bad("comment", with_("comment", lang=tag35 + "e"), "comment.lang: at most 35 characters")


@pytest.mark.parametrize("code", ["BE", "NL", "XK", "ZZ"])
def test_country_good(code: str) -> None:
    ok("community", with_("community", country=code))


@pytest.mark.parametrize("code", ["", "B", "be", "Be", "BEL", "B1", "ÉE", "BE\n", " BE"])
def test_country_bad(code: str) -> None:
    bad("community", with_("community", country=code), "community.country:")


@pytest.mark.parametrize("cat", ["emergency", "health", "contacts", "a", "x_2", "a" * 32])
def test_category_good(cat: str) -> None:
    ok("infokit", with_("infokit", category=cat))


@pytest.mark.parametrize("cat", ["", "Health", "2x", "_x", "a-b", "a b", "a" * 33, "santé"])
def test_category_bad(cat: str) -> None:
    bad("infokit", with_("infokit", category=cat), "infokit.category:")


# --------------------------------------------------------------------------- lists


def test_languages_list() -> None:
    langs = ["aa", "ab", "ac", "ad", "ae", "af", "ag", "ah", "ai", "aj"]
    langs += ["ak", "al", "am", "an", "ao", "ap"]
    ok("community", with_("community", languages=langs))
    bad("community", with_("community", languages=[*langs, "aq"]), "community.languages:")
    bad("community", with_("community", languages=[]), "community.languages: must have 1..16")
    e = bad("community", with_("community", languages=["nl", "fr", "nl"]), "community.languages[2]")
    assert "repeats item 0" in str(e)


def test_tags_list() -> None:
    tags = [f"t{i}" for i in range(16)]
    ok("topic", with_("topic", tags=tags))
    bad("topic", with_("topic", tags=[*tags, "x"]), "topic.tags: must have 0..16 items, got 17")
    ok("topic", with_("topic", tags=["€" * 40]))
    bad("topic", with_("topic", tags=["€" * 41]), "topic.tags[0]: at most 40")
    bad("topic", with_("topic", tags=[""]), "topic.tags[0]: must not be empty")
    bad("topic", with_("topic", tags=["a", "a"]), "topic.tags[1]: repeats")
    ok("topic", with_("topic", tags=["a", "A"]))  # exact comparison, no case folding
    bad("topic", with_("topic", tags=[1]), "topic.tags[0]: must be str")
    bad("topic", with_("topic", tags="a"), "topic.tags: must be list")


def test_lists_may_be_tuples() -> None:
    ok("topic", with_("topic", tags=("a", "b")))


def test_draw_selected() -> None:
    sel = [i.to_bytes(32, "big") for i in range(1_000)]
    ok("draw", with_("draw", selected=sel), ids(2))
    bad("draw", with_("draw", selected=[*sel, ID]), "draw.selected: must have 0..1,000", ids(2))
    bad("draw", with_("draw", selected=[ID, ID2, ID]), "draw.selected[2]: repeats item 0", ids(2))
    bad("draw", with_("draw", selected=[ID[:31]]), "draw.selected[0]: must be exactly 32", ids(2))


# --------------------------------------------------------------------------- survey, answer


def survey(*questions: Any) -> dict[str, Any]:
    return with_("survey", questions=list(questions))


def test_questions_count() -> None:
    ok("survey", survey(*[Q_TEXT] * 100))
    bad("survey", survey(*[Q_TEXT] * 101), "survey.questions: must have 1..100 items, got 101")
    bad("survey", survey(), "survey.questions: must have 1..100")


@pytest.mark.parametrize(
    ("qtype", "lo", "hi"), [("scale", 2, 11), ("choice", 2, 50), ("text", 0, 0)]
)
def test_options_count_by_type(qtype: str, lo: int, hi: int) -> None:
    def q(n: int) -> dict[str, Any]:
        return {"text": "Q", "type": qtype, "options": [f"o{i}" for i in range(n)]}

    ok("survey", survey(q(lo)))
    ok("survey", survey(q(hi)))
    if lo > 0:
        e = bad("survey", survey(q(lo - 1)), "survey.questions[0].options:")
        assert f"`{qtype}` needs" in str(e)
    bad("survey", survey(q(hi + 1)), "survey.questions[0].options:")


def test_question_map() -> None:
    bad("survey", survey({**Q_CHOICE, "extra": 1}), "survey.questions[0].extra: unknown field")
    for name in ("text", "type", "options"):
        q = dict(Q_CHOICE)
        del q[name]
        bad("survey", survey(q), f"survey.questions[0].{name}: required field is missing")
    bad("survey", survey(Q_TEXT, "text"), "survey.questions[1]: must be map, got str")
    bad("survey", survey({**Q_CHOICE, "options": ["a", "a"]}), "survey.questions[0].options[1]")
    bad("survey", survey({**Q_CHOICE, "options": ["a", ""]}), "survey.questions[0].options[1]")
    bad("survey", survey({**Q_CHOICE, "text": ""}), "survey.questions[0].text: must not be")
    ok("survey", survey({**Q_CHOICE, "text": "€" * 2_000}))
    bad("survey", survey({**Q_CHOICE, "text": "€" * 2_001}), "survey.questions[0].text: at most")
    ok("survey", survey({**Q_CHOICE, "options": ["€" * 200, "b"]}))
    bad(
        "survey",
        survey({**Q_CHOICE, "options": ["€" * 201, "b"]}),
        "survey.questions[0].options[0]",
    )
    qk: dict[Any, Any] = {**Q_CHOICE}
    qk[5] = "x"
    bad("survey", survey(qk), "survey.questions[0]: map key 5 is not a str")


def test_survey_opens_before_closes() -> None:
    ok("survey", with_("survey", opens=0, closes=1))
    e = bad("survey", with_("survey", opens=5, closes=5), "survey.closes: opens < closes")
    assert "got 5 and 5" in str(e)
    bad("survey", with_("survey", opens=6, closes=5), "survey.closes:")


def test_meeting_starts_not_after_ends() -> None:
    ok("meeting", with_("meeting", starts=5, ends=5))
    bad("meeting", with_("meeting", starts=6, ends=5), "meeting.ends: starts <= ends")


def test_answers() -> None:
    ok("answer", {"answers": [0, 49, None, "x", "€" * 20_000]})
    ok("answer", {"answers": [None] * 100})
    bad("answer", {"answers": [None] * 101}, "answer.answers: must have 1..100")
    bad("answer", {"answers": []}, "answer.answers: must have 1..100")
    bad("answer", {"answers": [50]}, "answer.answers[0]: must be in 0..49")
    bad("answer", {"answers": [0, -1]}, "answer.answers[1]: must be in 0..49")
    bad("answer", {"answers": [""]}, "answer.answers[0]: must not be empty")
    bad("answer", {"answers": ["€" * 20_001]}, "answer.answers[0]: at most 20,000")
    bad("answer", {"answers": [b"x"]}, "answer.answers[0]: must be int or str or nil, got bin")
    bad("answer", {"answers": [[0]]}, "answer.answers[0]: must be int or str or nil, got list")
    ok("answer", {"answers": [0, 0]})  # repeats are fine: not distinct


# --------------------------------------------------------------------------- refs, edit_of


@pytest.mark.parametrize("kind", sorted(KNOWN_KINDS))
def test_ref_counts(kind: str) -> None:
    lo, hi = REFS[kind]
    for n in range(17):
        if lo <= n <= hi:
            ok(kind, FULL[kind], ids(n))
        else:
            e = bad(kind, FULL[kind], f"{kind}: refs must be", ids(n))
            assert f"got {n}" in str(e)


def test_refs_checked_before_body() -> None:
    bad("vote", {"choice": "maybe"}, "vote: refs must be exactly 1", ())


def test_draw_refs_distinct() -> None:
    ok("draw", FULL["draw"], (ID, ID2, ID3))
    bad("draw", FULL["draw"], "draw: refs must be distinct", (ID, ID2, ID))
    bad("draw", FULL["draw"], "draw: refs must be distinct", (ID, ID))


def test_other_kinds_refs_need_not_be_distinct() -> None:
    # A single-ref kind cannot repeat; a 0..1 kind neither: only draw has several.
    assert all(hi <= 1 for k, (_, hi) in REFS.items() if k != "draw")


@pytest.mark.parametrize("kind", sorted(EDITABLE_KINDS))
def test_edit_of(kind: str) -> None:
    ok(kind, {**MINIMAL[kind], "edit_of": ID})
    bad(kind, {**MINIMAL[kind], "edit_of": None}, f"{kind}.edit_of: must be bin, got nil")
    bad(kind, {**MINIMAL[kind], "edit_of": ID + b"x"}, f"{kind}.edit_of: must be exactly 32")


@pytest.mark.parametrize("kind", ["erase", "sign"])
def test_empty_bodies(kind: str) -> None:
    ok(kind, {})
    bad(kind, {"reason": "x"}, f"{kind}.reason: unknown field")


def test_optional_fields_may_not_be_nil() -> None:
    bad("grant", with_("grant", until=None), "grant.until: must be int, got nil")


# --------------------------------------------------------------------------- unknown kinds


@pytest.mark.parametrize("kind", ["poll", "x", "vote_v2", "", "VOTE", "a" * 32])
def test_unknown_kind_passes(kind: str) -> None:
    assert kind not in KNOWN_KINDS
    junk: dict[Any, Any] = {"anything": 1.5, 2: None}
    check_body(kind, junk, ids(16))  # stored, not shown: nothing to check
    check_body(kind, None, ())  # type: ignore[arg-type]


def test_error_is_a_remote_error() -> None:
    from protocol.errors import MessageRejected, RemoteProtocolError

    e = bad("vote", {"choice": 1}, "vote.choice")
    assert isinstance(e, MessageRejected)
    assert isinstance(e, RemoteProtocolError)


def test_error_message_is_short_for_huge_values() -> None:
    e = bad("vote", {"choice": "x" * 10_000}, "vote.choice")
    assert len(str(e)) < 200


# --------------------------------------------------------------------------- docs


def test_markdown_covers_every_kind_and_field() -> None:
    md = schema_markdown()
    for kind, schema in SCHEMAS.items():
        assert f"### `{kind}`" in md
        assert re.search(rf"^\| `{kind}` \|", md, re.MULTILINE), kind
        for f in schema.body.fields:
            assert f"| `{f.name}` |" in md
        for nested in schema.nested():
            assert f"Map `{nested.name}`" in md
    assert md.count("\n### ") == len(KNOWN_KINDS)
    assert "edit_of" in md
    assert "opens` < `closes" in md
    assert "starts` <= `ends" in md


def test_markdown_tables_are_well_formed() -> None:
    for line in schema_markdown().splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            assert len(cells) in (4, 5), line


# --------------------------------------------------------------------------- hypothesis

LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=50),
    st.binary(max_size=40),
    st.sampled_from([ID, "nl", "BE", "yes", "member", "local", "scale", "choice", "text", 0, 1]),
)
FIELD_NAMES = sorted({f.name for s in SCHEMAS.values() for f in s.body.fields})
KEY = st.one_of(st.sampled_from([*FIELD_NAMES, "options", "type", "text"]), st.text(max_size=8))
VALUE = st.recursive(
    LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(KEY, children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(KNOWN_KINDS)),
    body=st.one_of(st.dictionaries(KEY, VALUE, max_size=8), VALUE),
    nrefs=st.integers(0, 16),
)
def test_random_bodies_raise_only_bad_body(kind: str, body: Any, nrefs: int) -> None:
    try:
        check_body(kind, body, ids(nrefs))
    except BadBody as e:
        assert str(e).startswith(kind)
    assert_fits_only_if_valid(kind, body)


def passes(kind: str, body: Any) -> bool:
    try:
        check_body(kind, body, refs_for(kind))
    except BadBody:
        return False
    return True


def assert_fits_only_if_valid(kind: str, body: Any) -> None:
    """The quick test never lets through what the full check refuses."""
    if SCHEMAS[kind].body.fits(body):
        assert passes(kind, body), (kind, body)


@settings(max_examples=500)
@given(
    kind=st.sampled_from(sorted(KNOWN_KINDS)),
    data=st.data(),
)
def test_mutated_valid_bodies_raise_only_bad_body(kind: str, data: st.DataObject) -> None:
    body = dict(FULL[kind])
    if body:
        name = data.draw(st.sampled_from(sorted(body)))
        body[name] = data.draw(VALUE)
    if data.draw(st.booleans()):
        body[data.draw(KEY)] = data.draw(VALUE)
    try:
        check_body(kind, body, refs_for(kind))
    except BadBody as e:
        assert str(e).startswith(kind)
    assert_fits_only_if_valid(kind, body)


def strategy(spec: Spec) -> st.SearchStrategy[Any]:
    """Values that match ``spec`` (cross-field rules are fixed up by the caller)."""
    if isinstance(spec, Str):
        alphabet = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\u2028\u2029")
        if spec.multiline:
            alphabet = st.one_of(alphabet, st.sampled_from("\t\n\r"))
        return st.text(alphabet, min_size=spec.min_len, max_size=min(spec.max_len, 60))
    if isinstance(spec, Pattern):
        return st.from_regex(spec.regex, fullmatch=True).filter(lambda s: len(s) <= spec.max_len)
    if isinstance(spec, Enum):
        return st.sampled_from(spec.values)
    if isinstance(spec, Int):
        return st.integers(spec.lo, spec.hi)
    if isinstance(spec, Bin):
        return st.binary(min_size=spec.size, max_size=spec.size)
    if isinstance(spec, Nil):
        return st.none()
    if isinstance(spec, OneOf):
        return st.one_of(*(strategy(o) for o in spec.options))
    if isinstance(spec, ListOf):
        return st.lists(
            strategy(spec.item),
            min_size=spec.min_len,
            max_size=min(spec.max_len, 5),
            unique=spec.distinct,
        )
    if isinstance(spec, MapOf):
        if spec.name == "question":
            return st.sampled_from([Q_SCALE, Q_CHOICE, Q_TEXT])
        required = {f.name: strategy(f.spec) for f in spec.fields if f.required}
        optional = {f.name: strategy(f.spec) for f in spec.fields if not f.required}
        return st.fixed_dictionaries(required, optional=optional)
    raise AssertionError(spec)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(KNOWN_KINDS)), data=st.data())
def test_bodies_generated_from_the_schema_pass(kind: str, data: st.DataObject) -> None:
    body = data.draw(strategy(SCHEMAS[kind].body))
    if kind == "survey" and body["opens"] >= body["closes"]:
        body["opens"], body["closes"] = 0, max(body["closes"], 1)
    if kind == "meeting" and body["starts"] > body["ends"]:
        body["starts"], body["ends"] = body["ends"], body["starts"]
    lo, hi = REFS[kind]
    check_body(kind, body, ids(data.draw(st.integers(lo, hi))))
    # The quick test takes them too, unless a str holds U+0080..U+00BF (first UTF-8
    # byte C2, as for the C1 controls: those go to the full check).
    assert SCHEMAS[kind].body.fits(body) or has_c2_char(body), body


def has_c2_char(value: Any) -> bool:
    if isinstance(value, str):
        return any("\x80" <= ch <= "\xbf" for ch in value)
    if isinstance(value, (list, tuple)):
        return any(has_c2_char(v) for v in value)
    if isinstance(value, dict):
        return any(has_c2_char(v) for v in value.values())
    return False
