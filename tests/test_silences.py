"""Silences: label matchers (Alertmanager semantics), validation, the book over SQLite and PostgreSQL, its audit."""

from __future__ import annotations

import itertools
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import test_store
from twin.alerting.labels import AlertLabels, Matcher, parse_matcher
from twin.alerting.silences import MAX_DURATION_S, SilenceBook, new_silence
from twin.alerting.store import Store

PG_URL = os.environ.get("CITYTWIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = 1_735_689_600.0
store = test_store.store
"""The fixture: a store over SQLite and over PostgreSQL (tests/test_store.py)."""


def lab(identifier="a1", hazard="flood", level=3, place="flood:point:water-03", name="Bund Tunnel north portal",
        devices=("water-03",), **kw) -> AlertLabels:
    return AlertLabels(identifier, hazard, level, place, name, devices, district="bund", **kw)


def counter_ids():
    n = itertools.count(1)
    return lambda: f"s{next(n)}"


# ---------------------------------------------------------------- matchers
@pytest.mark.parametrize(("text", "hit"), [
    ('hazard="flood"', True), ('hazard!="flood"', False), ('hazard="crowd"', False),
    ('level="orange"', True), ("level=3", True), ('level=~"red|orange"', True), ('level!~"red|orange"', False),
    ('level_number="3"', True), ('place=~"flood:point:.*"', True), ('place=~"point"', False),  # anchored
    ('device="water-03"', True), ('device="water-04"', False), ('device!="water-03"', False),
    ('devices=~"water-0[0-9]"', True), ('device!~"rain-.*"', True), ('district="bund"', True),
    ('scope=""', True), ('place_name=~"Bund Tunnel.*"', True), ('identifier="a1"', True),
])
def test_matchers_follow_alertmanager_semantics(text, hit):
    assert parse_matcher(text).matches(lab()) is hit


def test_a_device_matcher_holds_for_one_of_several_devices_and_missing_labels_are_empty():
    two = lab(devices=("water-03", "water-05"))
    assert Matcher.of("device", "=", "water-05").matches(two)
    assert not Matcher.of("device", "!=", "water-05").matches(two)
    none = lab(devices=(), place="", name="")
    assert Matcher.of("device", "=", "").matches(none) and Matcher.of("place", "=", "").matches(none)
    assert not Matcher.of("place", "=~", ".+").matches(none)


@pytest.mark.parametrize(("args", "message"), [
    (("colour", "=", "red"), "unknown label 'colour'"),
    (("hazard", "==", "flood"), "unknown operator '=='"),
    (("place", "=~", "(unclosed"), "bad regular expression"),
    (("level", "=", "7"), "level 7 does not exist"),
    (("place", "=", "x" * 201), "too long"),
    (("place", "=", "a\nb"), "printable"),
])
def test_bad_matchers_say_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Matcher.of(*args)


def test_matcher_text_round_trip_with_quotes():
    m = parse_matcher('place_name="say \\"hi\\""')
    assert m.value == 'say "hi"' and parse_matcher(m.text()) == m
    with pytest.raises(ValueError, match="cannot read matcher"):
        parse_matcher("just words")


LABEL_VALUES = st.sampled_from(["", "flood", "crowd", "water-03", "water-04", "a.b", "x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=LABEL_VALUES, wanted=LABEL_VALUES, devices=st.lists(LABEL_VALUES.filter(bool), max_size=3))
def test_negated_operators_are_the_complement(value, wanted, devices):
    """``!=`` is the complement of ``=`` and ``!~`` of ``=~``; a regex without metacharacters is ``=``; a device
    label holds for ``=`` iff the value is among the devices."""
    labels = lab(place=value, devices=tuple(devices))
    for label in ("place", "device"):
        eq, ne = Matcher.of(label, "=", wanted), Matcher.of(label, "!=", wanted)
        rx, nrx = Matcher.of(label, "=~", re.escape(wanted)), Matcher.of(label, "!~", re.escape(wanted))
        assert eq.matches(labels) != ne.matches(labels)
        assert rx.matches(labels) != nrx.matches(labels)
        assert eq.matches(labels) == rx.matches(labels)
    assert Matcher.of("device", "=", wanted).matches(labels) == (wanted in devices or (not devices and not wanted))


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(("kw", "message"), [
    ({"matchers": []}, "at least one matcher"),
    ({"matchers": [("hazard", "=~", ".*")]}, "would silence every alert"),
    ({"matchers": [("hazard", "=", "flood"), ("colour", "=", "red")]}, "matcher 2: unknown label"),
    ({"matchers": [("place", "=~", "[")]}, "bad regular expression"),
    ({"ends_at": T0 - 1}, "must be after starts_at"),
    ({"starts_at": T0 + 7200, "ends_at": T0 + 3600}, "must be after starts_at"),
    ({"ends_at": T0 + MAX_DURATION_S + 10}, "at most 31 days"),
    ({"created_by": "  "}, "created_by must not be empty"),
    ({"comment": ""}, "comment must not be empty"),
    ({"comment": "x" * 501}, "comment is too long"),
    ({"ends_at": float("nan")}, "finite time"),
])
def test_a_bad_silence_is_refused_with_a_clear_reason(kw, message):
    args = {"matchers": [("hazard", "=", "flood")], "starts_at": None, "ends_at": T0 + 3600,
            "created_by": "Wang Fang", "comment": "pump works at the tunnel", **kw}
    with pytest.raises(ValueError, match=re.escape(message)):
        new_silence(args["matchers"], args["starts_at"], args["ends_at"], args["created_by"], args["comment"], T0)


def test_a_start_in_the_past_is_now():
    s = new_silence([("hazard", "=", "flood")], T0 - 500, T0 + 60, "Wang Fang", "drill", T0)
    assert s.starts_at == T0 and s.state(T0) == "active" and s.state(T0 + 60) == "expired"


# ---------------------------------------------------------------- the book, stored and audited
def test_book_creates_matches_expires_and_audits(store):
    book = SilenceBook(store, new_id=counter_ids())
    pump = book.create([("hazard", "=", "flood"), ("place", "=", "flood:point:water-03")], T0 + 3600, "Wang Fang",
                       "pump maintenance at the tunnel portal", T0)
    later = book.create([("device", "=", "crowd-07")], T0 + 7200, "Li Lei", "counter miscounts", T0,
                        starts_at=T0 + 600)
    assert (pump.id, later.id) == ("s1", "s2")
    assert book.matching(lab(), T0 + 10) == pump
    assert book.matching(lab(place="flood:point:water-04"), T0 + 10) is None
    crowd = lab(hazard="crowd", devices=("crowd-07",), place="crowd:area:chen-yi-square")
    assert book.matching(crowd, T0 + 10) is None, "pending"
    assert book.matching(crowd, T0 + 600) == later
    assert [s.id for s in book.list(T0 + 10, "active")] == ["s1"]
    assert [s.id for s in book.list(T0 + 10, "pending")] == ["s2"]

    gone = book.expire("s1", "Zhao Min", "works finished early", T0 + 1200)
    assert gone.expired_at == T0 + 1200 and gone.expired_by == "Zhao Min" and gone.state(T0 + 1200) == "expired"
    assert book.matching(lab(), T0 + 1300) is None
    with pytest.raises(ValueError, match="already expired"):
        book.expire("s1", "Zhao Min", "again", T0 + 1300)
    with pytest.raises(KeyError):
        book.expire("nope", "Zhao Min", "why", T0)
    with pytest.raises(ValueError, match="why must not be empty"):
        book.expire("s2", "Zhao Min", " ", T0)

    audit = book.audit()
    assert [(a["silence_id"], a["action"], a["actor"], a["t"]) for a in audit] == [
        ("s1", "create", "Wang Fang", T0), ("s2", "create", "Li Lei", T0), ("s1", "expire", "Zhao Min", T0 + 1200)]
    assert audit[0]["before"] is None and audit[0]["after"]["matchers"][1] == {
        "label": "place", "op": "=", "value": "flood:point:water-03"}
    assert audit[2]["before"]["expired_at"] is None and audit[2]["after"]["expired_at"] == T0 + 1200
    assert audit[2]["comment"] == "works finished early"
    assert [a["action"] for a in book.audit("s1")] == ["create", "expire"]

    reopened = SilenceBook(store)  # a restart: the silences come back from the store
    assert reopened.get("s1") == gone and reopened.get("s2") == later
    assert [s.id for s in reopened.list(T0 + 1300, "expired")] == ["s1"]


def test_of_two_silences_the_one_ending_last_is_named(tmp_path):
    store = Store.open(tmp_path / "a.db")
    book = SilenceBook(store, new_id=counter_ids())
    book.create([("hazard", "=", "flood")], T0 + 600, "A", "short", T0)
    long = book.create([("level", "=", "orange")], T0 + 6000, "B", "long", T0)
    assert book.matching(lab(), T0 + 1) == long
    with pytest.raises(ValueError, match="unknown state"):
        book.list(T0, "current")
    store.close()


ACTIONS = st.lists(st.tuples(st.sampled_from(["create", "expire"]), st.integers(0, 4), st.integers(0, 3000),
                             st.integers(60, 4000)), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_states_follow_start_end_and_early_expiry(tmp_path_factory, actions):
    """Whatever the order of creations and expiries: each silence is in exactly one state; pending before its start,
    expired after its end or once expired; expiring needs a live silence; the audit has one row per change."""
    store = Store.open(tmp_path_factory.mktemp("sil") / "a.db")
    book = SilenceBook(store, new_id=counter_ids())
    now, changes = T0, 0
    for action, k, start_in, length in actions:
        now += 30
        if action == "create":
            book.create([("hazard", "=", "flood")], now + start_in + length, "op", "why", now, starts_at=now + start_in)
            changes += 1
            continue
        ids = [s.id for s in book.list(now)]
        if not ids:
            continue
        target = book.get(ids[k % len(ids)])
        if target.state(now) == "expired":
            with pytest.raises(ValueError):
                book.expire(target.id, "op", "why", now)
        else:
            book.expire(target.id, "op", "why", now)
            changes += 1
    for t in (now, now + 1000, now + 10_000):
        every = book.list(t, "all")
        parts = [book.list(t, s) for s in ("pending", "active", "expired")]
        assert sorted(s.id for p in parts for s in p) == sorted(s.id for s in every)
        for s in every:
            want = ("expired" if s.expired_at is not None or t >= s.ends_at else
                    "pending" if t < s.starts_at else "active")
            assert s.state(t) == want
        active = [s for s in every if s.state(t) == "active"]
        assert (book.matching(lab(), t) is not None) == bool(active)
    assert len(book.audit()) == changes
    store.close()
