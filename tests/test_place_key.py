"""A French number's place read from its head (ivr/compliance/place_key.py): the last four
digits are keyed away only where the installed metadata proves they cannot change what the
calling rules make of the number, and the answer is then the parse's, number by number."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from conftest import add_contact, make_config
from test_plan_at_scale import parses_counted
from ivr.campaign.planning import plan
from ivr.compliance import callee_place, holiday_place
from ivr.compliance.place_key import (TAIL, _code_reads, head_width, place_key, prefix_width,
                                      tail_free)
from ivr.store import Store

OPEN = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)  # Tuesday 11:00 Paris, 14:00 Réunion

# Heads of the French plans where ranges split: Réunion's and Mayotte's mobiles (0692/0693,
# 0639), their landlines, the Antilles' and Guiana's, boxes whose +33 9 form is an overseas
# region's (09 76 22.., 09 39 70.., 09 47 50..), Saint-Pierre-et-Miquelon, mainland ranges.
HEADS = ["+262692", "+262693", "+262639", "+262262", "+262263", "+262269", "+262709",
         "+262976", "+590690", "+590691", "+590590", "+590976", "+596696", "+596697",
         "+596596", "+594694", "+594594", "+508", "+50870", "+50880", "+3397622", "+3393970",
         "+3394750",
         "+3394760", "+3397669", "+33612", "+33387", "+33162", "+33948"]


def _numbers() -> list[str]:
    """Each head followed by every value of its next digit pair and random tails, so that a
    range splitting on the fifth digit from the end is met on both sides."""
    rnd = random.Random(9)
    out = []
    for head in HEADS:
        length = 10 if head == "+508" else 13 if head.startswith(("+262", "+59", "+508")) \
            else 12
        for pair in range(100):
            stem = f"{head}{pair:02d}"
            for _ in range(3):
                rest = length - len(stem)
                out.append(stem + "".join(rnd.choice("0123456789") for _ in range(rest)))
    return out


def test_the_metadata_proves_the_french_plans_tails_free() -> None:
    """The shortcut is taken where the plans are: if a release of phonenumbers stopped it,
    planning would be ten times slower for an overseas list, silently."""
    for code in (33, 262, 590, 594, 596, 508):
        assert head_width(code) is not None, code
    assert place_key("+262692123456") == "+262692120000"
    assert place_key("+33612345678") == "+33612340000"
    # New Caledonia's 6-digit numbers end in \d{3}: parsed one by one
    assert head_width(687) is None and place_key("+687234567") == "+687234567"
    # Saint-Pierre-et-Miquelon's 9-digit numbers are; its 6-digit ones are too short to be
    assert place_key("+508708123456") == "+508708120000" and place_key("+508412345") == \
        "+508412345"
    # other plans are never keyed, whatever their metadata: North America, the UK, Russia
    for foreign in ("+12025550143", "+447911123456", "+79161234567"):
        assert place_key(foreign) == foreign
    assert _code_reads(241) is None  # Gabon's national prefix rewrites the digits


@pytest.mark.parametrize("text", ["", "+", "+26269", "0612345678", "+33 6 12 34 56 78",
                                  "+3361234567x", "+\u0663\u0663612345678"])
def test_what_is_not_an_e164_number_is_its_own_key(text: str) -> None:
    assert place_key(text) == text


@pytest.mark.parametrize("pattern, free", [
    (r"2631[0-6]\d{4}|26(?:2\d|30|88)\d{5}", True),
    (r"(?:69[67]\d\d|7091[0-3])\d{4}", True),
    (r"[2-9]\d\d[0-9]{2}\d\d", True),
    (r"26\d{3}[0-3]\d{2}", False),               # the fourth digit from the end is bounded
    (r"(?:050|[2-57-9]\d\d)\d{3}", False),       # three free digits only
    (r"4\d{5}(?:\d{2})?", False),                # an optional pair: not proved
    (r"8\d{7,8}", False),                        # a varying count: not proved
    (r"6\d{4}|7[0-3]\d{3}", False),              # one branch with three only
    (r"(?i:6\d{4})", False),                     # flags: not inlined
    (r"(?>\d*1)?\d{4}", False),                   # an atomic group reads the tail
    (r"(?=\d*5$)\d{9}", False),                   # so does a look-ahead
    (r"\d*+\d{4}", False),                        # and a possessive repeat
    (r"(\d)\d{3}\1\d{4}", False),                  # and a back-reference
])
def test_a_pattern_is_free_only_when_every_branch_ends_in_four_digits(pattern: str,
                                                                       free: bool) -> None:
    assert tail_free(pattern, TAIL) is free


def test_a_prefix_that_reads_the_whole_number_gives_no_width() -> None:
    assert prefix_width("0") == 1 and prefix_width("269|63") == 3
    assert prefix_width(r"0|([2-9]\d{5})$") is None
    assert prefix_width(r"(?=\d{9})0") is None
    assert prefix_width(r"(?>0(?=\d{8}5))") is None and prefix_width("") == 0


def _answers() -> list[object]:
    callee_place._parsed.cache_clear()
    callee_place._number_zone.cache_clear()
    holiday_place._number_subdivs.cache_clear()
    return [(callee_place.callee_zone(n, None, "Europe/Paris"),
             callee_place.callee_zone(n, None, "Indian/Reunion"),
             holiday_place.fr_subdivisions(n)) for n in _numbers()]


def test_the_keyed_answer_is_the_parses_for_every_number(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """callee_zone and fr_subdivisions, keyed, against the same with every number its own
    key (each parsed itself, as before the key)."""
    keyed = _answers()
    monkeypatch.setattr(callee_place, "place_key", lambda number: number)
    monkeypatch.setattr(holiday_place, "place_key", lambda number: number)
    parsed = _answers()
    for number, mine, theirs in zip(_numbers(), keyed, parsed):
        assert mine == theirs, number
    assert len({a[0] for a in parsed}) > 2  # the sample spans several zones


def test_a_plan_over_one_block_parses_its_head_once(monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.memory()
    conf = make_config(campaign={"name": "c1", "caller_id": "+33162000000"},
                       retry={"max_attempts": 3})
    numbers = [f"+2626921234{i:02d}" for i in range(40)] + ["+262693071234"]
    for number in numbers:
        add_contact(store, number, at=OPEN - timedelta(days=90))
    parsed = parses_counted(monkeypatch)
    p = plan(conf, store, OPEN)
    assert sorted(c["number"] for c in p.due) == sorted(numbers)
    assert {n for n in parsed if n.startswith("+262")} == {"+262692120000", "+262693070000"}
