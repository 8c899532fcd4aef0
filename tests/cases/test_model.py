"""The case state machine: every transition, the fold, and properties over any sequence of events."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cases import BUND, PATHS, T0, data_for, events_to, opened
from twin.cases.model import (
    ASSIGNMENT_STATUSES,
    EVENT_KINDS,
    FINAL_KINDS,
    NOTE_KINDS,
    OPEN_STATUSES,
    STATUS_AFTER,
    STATUSES,
    TRANSITIONS,
    CaseError,
    CaseEvent,
    CasePlace,
    fold,
    next_case,
)

CASE = "bund-20250101-0001"


def test_a_case_opens_new_with_its_place_and_round():
    case = fold([opened()])
    assert (case.id, case.status, case.assignee, case.priority, case.category) == (
        CASE, "new", "", 1, "waterlogging")
    assert case.place == BUND and case.reached == {"new": T0} and case.escalated == frozenset()
    assert case.is_open and case.opened_at == case.updated_at == T0


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_is_reached_from_new_by_its_path(status):
    assert fold(events_to(status)).status == status


@pytest.mark.parametrize("kind", sorted(TRANSITIONS))
@pytest.mark.parametrize("status", STATUSES)
def test_every_status_changing_kind_is_allowed_exactly_from_its_statuses(kind, status):
    case = fold(events_to(status))
    event = CaseEvent(CASE, len(case.events), kind, T0 + 3600, "op", "why", data_for(kind))
    if status in TRANSITIONS[kind]:
        assert next_case(case, event).status == STATUS_AFTER[kind]
    else:
        with pytest.raises(CaseError) as err:
            next_case(case, event)
        assert err.value.code == "bad_transition" and kind in err.value.detail


@pytest.mark.parametrize("kind", NOTE_KINDS)
@pytest.mark.parametrize("status", STATUSES)
def test_closed_and_cancelled_cases_take_only_notes_and_attachments(kind, status):
    case = fold(events_to(status))
    event = CaseEvent(CASE, len(case.events), kind, T0 + 3600, "op", "note", data_for(kind))
    if status in OPEN_STATUSES or kind in FINAL_KINDS:
        assert next_case(case, event).status == status
    else:
        with pytest.raises(CaseError, match="takes only noted and attached"):
            next_case(case, event)


def test_the_statuses_form_one_connected_machine():
    seen, todo = {"new"}, ["new"]
    while todo:
        here = todo.pop()
        for kind, sources in TRANSITIONS.items():
            if here in sources and STATUS_AFTER[kind] not in seen:
                seen.add(STATUS_AFTER[kind])
                todo.append(STATUS_AFTER[kind])
    assert seen == set(STATUSES)


def test_dispatch_assigns_redispatch_reassigns_and_decline_clears():
    case = fold(events_to("en_route"))
    assert case.assignee == "fire-01" and set(case.reached) == {"new", "dispatched", "accepted", "en_route"}
    case = next_case(case, CaseEvent(CASE, 4, "dispatched", T0 + 400, "op", "nearer", {"unit": "fire-02"}))
    assert (case.status, case.assignee) == ("dispatched", "fire-02")
    assert case.reached == {"new": T0, "dispatched": T0 + 400}, "the new unit's steps are timed from its dispatch"
    case = next_case(case, CaseEvent(CASE, 5, "declined", T0 + 460, "fire-02", "engine busy", {"unit": "fire-02"}))
    assert (case.status, case.assignee) == ("new", "") and case.reached == {"new": T0}


def test_decline_and_reassignment_forget_the_assignment_steps_escalations():
    case = fold(events_to("accepted"))
    for n, step in enumerate(("dispatch", "accept", "on_scene"), start=len(case.events)):
        case = next_case(case, CaseEvent(CASE, n, "escalated", T0 + 900, "twin", "late", {"step": step,
                                                                                            "deadline": 1.0}))
    assert case.escalated == {"dispatch", "accept", "on_scene"}
    n = len(case.events)
    same = next_case(case, CaseEvent(CASE, n, "dispatched", T0 + 950, "op", "again", {"unit": case.assignee}))
    assert same.escalated == case.escalated and same.reached == case.reached, "the same unit: nothing forgotten"
    other = next_case(case, CaseEvent(CASE, n, "dispatched", T0 + 950, "op", "nearer", {"unit": "fire-02"}))
    assert other.escalated == {"dispatch"} and other.reached == {"new": T0, "dispatched": T0 + 950}
    declined = next_case(case, CaseEvent(CASE, n, "declined", T0 + 950, "fire-01", "busy", {"unit": "fire-01"}))
    assert declined.escalated == {"dispatch"} and declined.reached == {"new": T0}


def test_a_unit_answering_a_task_not_its_own_is_refused():
    case = fold(events_to("dispatched"))
    with pytest.raises(CaseError) as err:
        next_case(case, CaseEvent(CASE, 2, "accepted", T0 + 99, "fire-09", "", {"unit": "fire-09"}))
    assert err.value.code == "not_assigned" and "fire-01" in err.value.detail
    assert next_case(case, CaseEvent(CASE, 2, "accepted", T0 + 99, "fire-01", "", {"unit": "fire-01"})).status \
        == "accepted"


def test_reopen_starts_a_new_round():
    case = fold(events_to("disposed"))
    case = next_case(case, CaseEvent(CASE, 6, "escalated", T0 + 900, "desk", "", {"step": "verify", "deadline": 1.0}))
    assert case.escalated == {"verify"}
    case = next_case(case, CaseEvent(CASE, 7, "reopened", T0 + 1000, "inspector-1", "water is back"))
    assert (case.status, case.assignee, case.reached, case.escalated) == ("new", "", {"new": T0 + 1000}, frozenset())
    assert case.opened_at == T0 and len(case.events) == 8
    closed = fold(events_to("closed"))
    assert next_case(closed, CaseEvent(CASE, 8, "reopened", T0 + 2000, "op", "again")).status == "new"


def test_escalated_links_attachments_and_priority():
    case = fold(events_to("dispatched"))
    steps = [("escalated", {"step": "accept", "deadline": T0 + 180}), ("linked", {"alert": "A1"}),
             ("linked", {"report": "R-12345-77"}), ("linked", {"alert": "A1"}),
             ("attached", {"url": "https://img.example.cn/1.jpg"}), ("prioritised", {"priority": 3})]
    for k, (kind, data) in enumerate(steps, start=2):
        case = next_case(case, CaseEvent(CASE, k, kind, T0 + 100 + k, "op", "", data))
    assert case.escalated == {"accept"} and case.alerts == ("A1",) and case.reports == ("R-12345-77",)
    assert case.attachments == ("https://img.example.cn/1.jpg",) and case.priority == 3 and case.status == "dispatched"


@pytest.mark.parametrize(("kind", "data", "reason", "expected"), [
    ("dispatched", {}, "", "data.unit"),
    ("linked", {"alert": "A", "report": "R"}, "", "exactly one"),
    ("escalated", {"step": "lunch", "deadline": 1.0}, "", "data.step"),
    ("attached", {"url": "ftp://x/y"}, "", "http(s)"),
    ("prioritised", {"priority": 0}, "", "priority"),
    ("noted", {}, "  ", "reason must not be empty"),
    ("bogus", {}, "", "unknown event kind"),
    ("noted", {"x": float("nan")}, "n", "plain JSON"),
])
def test_bad_events_name_their_problem(kind, data, reason, expected):
    case = fold([opened()])
    with pytest.raises(CaseError) as err:
        next_case(case, CaseEvent(CASE, 1, kind, T0 + 1, "op", reason, data))
    assert err.value.code == "bad_request" and expected in err.value.detail


def test_events_must_come_in_order_and_open_first():
    case = fold([opened()])
    with pytest.raises(CaseError, match="out of order"):
        next_case(case, CaseEvent(CASE, 3, "noted", T0, "op", "x"))
    with pytest.raises(CaseError, match="already open"):
        next_case(case, CaseEvent(CASE, 1, "opened", T0, "op", "x"))
    with pytest.raises(CaseError) as err:
        fold([CaseEvent(CASE, 0, "noted", T0, "op", "x")])
    assert err.value.code == "unknown_case"
    with pytest.raises(CaseError, match="of case other"):
        next_case(case, CaseEvent("other", 1, "noted", T0, "op", "x"))


def test_bad_opened_data_is_refused():
    good = opened()
    for change, expected in (({"priority": 4}, "priority"), ({"source": "rumour"}, "source"),
                             ({"category": "Bad Code"}, "category"), ({"verify": "magic"}, "verify"),
                             ({"place": {**BUND.as_dict(), "lat": 95.0}}, "out of range"),
                             ({"place": {**BUND.as_dict(), "radius_m": 0}}, "radius_m")):
        with pytest.raises(CaseError, match=expected):
            fold([CaseEvent(CASE, 0, "opened", T0, "rules", "", {**good.data, **change})])


def test_rows_and_dicts_are_plain_and_round_trip():
    case = fold(events_to("on_scene"))
    rows = [e.to_row() for e in case.events]
    assert rows[1]["key"] == f"{CASE}#1" and rows[1]["case"] == CASE
    assert fold(CaseEvent.from_row(json.loads(json.dumps(r))) for r in rows) == case
    store_row = {**{k: v for k, v in rows[0].items() if k != "case"}, "case_id": CASE,
                 "data": json.dumps(rows[0]["data"])}
    assert CaseEvent.from_row(store_row) == case.events[0]
    out = json.loads(json.dumps(case.as_dict(events=True)))
    assert out["status"] == "on_scene" and out["place"]["name_zh"] == "外滩隧道北口" and out["open"] is True
    assert [h["kind"] for h in out["history"]] == ["opened", *PATHS["on_scene"]]
    assert CasePlace.of(out["place"]) == BUND


def test_case_error_codes_are_closed():
    assert str(CaseError("bad_request", "x")) == "bad_request: x"
    with pytest.raises(ValueError, match="unknown CaseError code"):
        CaseError("oops", "x")


# ---------------------------------------------------------------- properties over any sequence of events
DATA = st.sampled_from([{}, {"unit": "fire-01"}, {"unit": "fire-02"}, {"alert": "A1"}, {"report": "R-app-1"},
                        {"url": "https://x.cn/a.jpg"}, {"url": "nope"}, {"priority": 2}, {"priority": 9},
                        {"step": "dispatch", "deadline": 1.0}, {"step": "verify", "deadline": 2.0}])
STEP = st.tuples(st.sampled_from(EVENT_KINDS), DATA, st.floats(0, 600), st.sampled_from(["", "why"]))


def _first_round_times(accepted: list[CaseEvent]) -> dict[str, float]:
    """What ``reached`` should be, told independently: per status, the time of the first event that led to it
    since the round began (the last reopen), and for the assignment statuses since the last decline."""
    round_start = max(k for k, e in enumerate(accepted) if e.kind in ("opened", "reopened"))
    resets, assignee = [], ""  # declines, and dispatches to another unit than the assignee
    for k, e in enumerate(accepted):
        if e.kind == "dispatched":
            if assignee and e.data["unit"] != assignee and k > round_start:
                resets.append(k)
            assignee = e.data["unit"]
        elif e.kind in ("declined", "reopened"):
            assignee = ""
            if e.kind == "declined" and k > round_start:
                resets.append(k)
    out = {"new": accepted[round_start].t}
    for k in range(round_start + 1, len(accepted)):
        status = STATUS_AFTER.get(accepted[k].kind)
        if status is None or status == "new" or status in out:
            continue
        if status in ASSIGNMENT_STATUSES and resets and k < max(resets):
            continue
        out[status] = accepted[k].t
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_any_sequence_folds_or_raises_case_error_and_fold_matches_steps(steps):
    accepted, state, t = [opened()], fold([opened()]), T0
    for kind, data, dt, reason in steps:
        t += dt
        event = CaseEvent(CASE, len(accepted), kind, t, "op", reason, data)
        before = state
        try:
            state = next_case(state, event)
        except CaseError:
            assert state is before
            continue
        accepted.append(event)
        _check_step(before, state, event)
        assert state.reached == _first_round_times(accepted)
    assert fold(accepted) == state
    assert [e.n for e in state.events] == list(range(len(accepted)))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_walks_that_mostly_follow_the_machine_keep_its_rules(data):
    """Like the test above, but most events are ones the case allows, so walks reach every status."""
    accepted, state, t = [opened()], fold([opened()]), T0
    for _ in range(data.draw(st.integers(0, 40))):
        allowed = [k for k, src in TRANSITIONS.items() if state.status in src] + ["noted", "escalated"]
        kind = data.draw(st.sampled_from(allowed) if data.draw(st.integers(0, 4)) else st.sampled_from(EVENT_KINDS))
        t += data.draw(st.floats(0, 600))
        event = CaseEvent(CASE, len(accepted), kind, t, "op", "why", data_for(kind))
        before = state
        try:
            state = next_case(state, event)
        except CaseError:
            continue
        accepted.append(event)
        _check_step(before, state, event)
        assert state.reached == _first_round_times(accepted)
    assert fold(accepted) == state


def _check_step(before, after, event):
    if event.kind in TRANSITIONS:
        assert before.status in TRANSITIONS[event.kind] and after.status == STATUS_AFTER[event.kind]
    else:
        assert after.status == before.status
        assert before.is_open or event.kind in FINAL_KINDS
    if event.kind in ("reopened", "declined"):
        assert after.assignee == ""
    if event.kind == "reopened":
        assert after.escalated == frozenset() and after.reached == {"new": event.t}
    if event.kind == "dispatched":
        assert after.assignee == event.data["unit"]
    if event.kind == "declined" or (event.kind == "dispatched" and before.assignee
                                    and before.assignee != event.data["unit"]):
        assert after.escalated == before.escalated - {"accept", "on_scene"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), STEP), max_size=12))
def test_raw_sequences_fold_or_raise_case_error(raw):
    events = [opened()] + [CaseEvent(CASE, n, kind, T0 + dt, "op", reason, data)
                           for n, (kind, data, dt, reason) in raw]
    try:
        case = fold(events)
    except CaseError as exc:
        assert exc.code in ("bad_transition", "not_assigned", "bad_request", "unknown_case")
    else:
        assert case.status in STATUSES and len(case.events) == len(events)
