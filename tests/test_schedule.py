import dataclasses
import json

import pytest
from hypothesis import given, strategies as st

from revolve import (
    Advance, Discard, Record, Restore, Reverse, Schedule, Snapshot, action_from_json, binomial, periodic, simulate,
    store_all,
)


def test_actions_are_frozen_hashable_and_evaluable():
    acts = [Advance(0, 3), Snapshot(2), Snapshot(2, "disk"), Restore(1), Discard(1), Record(4), Reverse(4)]
    for a in acts:
        assert eval(repr(a)) == a
        assert hash(eval(repr(a))) == hash(a)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(a, dataclasses.fields(a)[0].name, 99)
        assert action_from_json(json.loads(json.dumps(a.to_json()))) == a
    assert Snapshot(1) != Snapshot(1, "disk")
    assert Advance(0, 1) != Record(0)


def test_fast_constructors_equal_public_ones():
    from revolve.actions import _advance, _discard, _record, _restore, _reverse, _snapshot

    assert _advance(2, 5) == Advance(2, 5) and hash(_advance(2, 5)) == hash(Advance(2, 5))
    assert _record(3) == Record(3) and _reverse(3) == Reverse(3) and _restore(1) == Restore(1)
    assert _snapshot(4) == Snapshot(4) and _snapshot(4, "disk") == Snapshot(4, "disk") and _discard(2) == Discard(2)


@given(n=st.integers(1, 80), s=st.integers(1, 10), k=st.integers(1, 90))
def test_json_round_trip(n, s, k):
    for sched in (binomial(n, snapshots=s), periodic(n, every=k), store_all(n)):
        back = Schedule.from_json(sched.to_json())
        assert list(back) == list(sched)
        assert back.n_steps == n and back.kind == sched.kind and back.params == sched.params


def test_save_and_load(tmp_path):
    sched = binomial(500, snapshots=7)
    path = tmp_path / "s.json"
    sched.save(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "revolve-schedule" and doc["version"] == 2 and doc["n_steps"] == 500
    assert doc["kind"] == "binomial" and doc["params"] == {"snapshots": 7} and "actions" not in doc
    assert list(Schedule.load(path)) == list(sched)
    sched.save(path, expand=True)  # the action list, the format for hand-made schedules
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and len(doc["actions"]) == len(list(sched))
    assert list(Schedule.load(path)) == list(sched)
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary left


def test_save_failure_leaves_nothing(tmp_path):
    def bad():
        yield Record(0)
        raise RuntimeError("planner failed")

    with pytest.raises(RuntimeError):
        Schedule(bad, n_steps=1).save(tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "doc,msg",
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ({"format": "other", "version": 1, "n_steps": 1, "actions": []}, "'format' must be 'revolve-schedule'"),
        ({"format": "revolve-schedule", "version": 3, "n_steps": 1, "actions": []}, "unsupported version 3"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 0, "actions": []}, "'n_steps' must be an integer >= 1"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": True, "actions": []}, "'n_steps' must be an integer"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 1, "actions": {}}, "'actions' must be a list"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 1, "actions": [{"op": "jump"}]}, "action #0: unknown action op 'jump'"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 1, "actions": [{"op": "record"}]}, "field 'step' missing"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 1, "actions": [{"op": "record", "step": -1}]}, "non-negative integer"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 1, "actions": [{"op": "record", "step": 1.0}]}, "non-negative integer"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 1, "actions": [{"op": "record", "step": 0, "x": 1}]}, "unexpected field"),
        ({"format": "revolve-schedule", "version": 1, "n_steps": 1, "actions": [{"op": "snapshot", "index": 0, "storage": ""}]}, "non-empty string"),
    ],
)
def test_malformed_documents(doc, msg):
    with pytest.raises(ValueError, match="revolve.Schedule.from_json") as info:
        Schedule.from_json(doc if isinstance(doc, str) else json.dumps(doc))
    assert msg in str(info.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read schedule file"):
        Schedule.load(tmp_path / "nope.json")


def test_repr_and_stats():
    sched = binomial(100, snapshots=5)
    assert repr(sched) == "Schedule(kind='binomial', n_steps=100, snapshots=5)"
    assert sched.stats().advances == simulate(sched).advances


@pytest.mark.parametrize("n, slots, io_cost, extra", [
    (1, {"ram": 2, "disk": 3}, {"disk": (2, 2)}, {}),
    (60, {"ram": 3, "disk": 5}, {"disk": (2.5, 1)}, {}),
    (200, {"ram": 2, "disk": 4}, {"disk": (3, 2)}, {"forward_cost": 2.0, "backward_cost": 0.5}),
    (300, {"gpu": 2, "host": 3, "disk": 4}, {"host": (1, 1), "disk": (4, 3)}, {"method": "fast"}),
])
def test_multilevel_json_round_trip(tmp_path, n, slots, io_cost, extra):
    from revolve import multilevel

    sched = multilevel(n, slots=slots, io_cost=io_cost, **extra)
    doc = json.loads(sched.to_json())
    # compact: the planner's name and parameters, not the action list
    assert doc["version"] == 2 and doc["kind"] == "multilevel" and "actions" not in doc
    back = Schedule.from_json(sched.to_json())
    assert back.kind == "multilevel" and back.params == sched.params and back.n_steps == n
    assert list(back) == list(sched)
    path = tmp_path / "m.json"
    sched.save(path, expand=False)
    again = Schedule.load(path)
    a = simulate(again, slots=slots, io_cost=io_cost)
    b = simulate(sched, slots=slots, io_cost=io_cost)
    assert a.cost == b.cost and a.peak_snapshots_by_storage == b.peak_snapshots_by_storage


def test_multilevel_document_with_bad_params_names_them():
    from revolve import multilevel

    doc = json.loads(multilevel(50, slots={"ram": 2, "disk": 3}, io_cost={"disk": (2, 2)}).to_json())
    del doc["params"]["method"]
    with pytest.raises(ValueError, match=r"multilevel planner takes params \['slots', 'io_cost', 'method'\]"):
        Schedule.from_json(doc)
    doc["params"]["method"] = "exact"
    doc["params"]["slots"] = {"ram": 0}
    with pytest.raises(ValueError, match="bad multilevel params"):
        Schedule.from_json(doc)


@pytest.mark.parametrize("algorithm", ["auto", "stumm-walther", "wang-moin"])
@pytest.mark.parametrize("n, s, last", [(1, 1, True), (21, 5, True), (40, 5, False), (300, 12, True)])  # n <= beta(s, 3)
def test_online_json_round_trip(algorithm, n, s, last):
    from revolve import online

    sched = online(snapshots=s, algorithm=algorithm).schedule(n, last_step_known=last)
    doc = json.loads(sched.to_json())
    assert doc["version"] == 2 and doc["kind"] == "online" and "actions" not in doc
    back = Schedule.from_json(doc)
    assert back.params == sched.params and list(back) == list(sched)
    assert simulate(back).advances == simulate(sched).advances
