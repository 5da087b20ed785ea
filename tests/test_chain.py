import math

import numpy as np
import pytest

from revolve import Chain


def test_uniform_and_sequences():
    c = Chain(forward_cost=1, backward_cost=[1, 2, 3], state_bytes=8, tape_bytes=[1, 2, 3])
    assert c.n_steps == 3
    assert c.values("state_bytes").tolist() == [8.0] * 4
    assert c.backward(2) == 3.0 and c.state(3) == 8.0
    assert not c.is_uniform


def test_json_round_trip(tmp_path):
    c = Chain(forward_cost=[1.5, 2], backward_cost=3, state_bytes=[1, 2, 3], tape_bytes=[4, 5])
    assert Chain.from_json(c.to_json()) == c
    p = tmp_path / "c.json"
    p.write_text(c.to_json())
    assert Chain.from_json(str(p)) == c
    assert Chain.from_json(p) == c


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        (dict(forward_cost=-1), ValueError, "forward_cost must be finite and >= 0, got -1"),
        (dict(backward_cost=math.inf), ValueError, "backward_cost must be finite"),
        (dict(state_bytes=[1, math.nan, 1, 1]), ValueError, r"state_bytes\[1\] must be finite"),
        (dict(tape_bytes=[1, -2, 3]), ValueError, r"tape_bytes\[1\] must be finite and >= 0, got -2"),
        (dict(tape_bytes="big"), TypeError, "tape_bytes must be a number or a sequence"),
        (dict(tape_bytes=True), TypeError, "tape_bytes must be a number"),
        (dict(tape_bytes=[1, 2]), ValueError, "lengths disagree"),
        (dict(state_bytes=[1, 2, 3]), ValueError, "state_bytes and adjoint_bytes need n \\+ 1"),
        (dict(n_steps=0), ValueError, "n_steps must be >= 1"),
        (dict(n_steps=2.0), TypeError, "n_steps must be an integer"),
    ],
)
def test_validation(kw, exc, msg):
    base = dict(forward_cost=1, backward_cost=1, state_bytes=[1, 1, 1, 1], tape_bytes=[1, 1, 1])
    base.update(kw)
    with pytest.raises(exc, match=msg):
        Chain(**base)


def test_uniform_needs_n_steps():
    with pytest.raises(ValueError, match="n_steps is required"):
        Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1)


@pytest.mark.parametrize("doc,msg", [("{", "not valid JSON"), ('{"format": "x"}', "'format' must be 'revolve-chain'"),
                                     ('{"format": "revolve-chain", "version": 1}', "missing field")])
def test_bad_documents(doc, msg):
    with pytest.raises(ValueError, match=msg):
        Chain.from_json(doc)


def test_numpy_inputs():
    c = Chain(forward_cost=np.ones(4), backward_cost=np.float32(2), state_bytes=np.arange(5), tape_bytes=np.arange(4))
    assert c.n_steps == 4 and c.tape(3) == 3.0


def test_shared_state_flags(tmp_path):
    c = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=3,
              tape_holds_input=[True, False, True], tape_holds_output=True)
    assert c.has_shared_states and c.holds("tape_holds_input").tolist() == [True, False, True]
    assert c.holds("tape_holds_output").all()
    back = Chain.from_json(c.to_json())
    assert back == c and back.to_dict()["tape_holds_output"] is True
    plain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=3)
    assert not plain.has_shared_states and plain != c and "tape_holds" not in plain.to_json()
    assert "tape_holds_input=[2 of 3 steps]" in repr(c)


@pytest.mark.parametrize(
    "kw,exc,msg",
    [
        (dict(tape_holds_input=[True, False]), ValueError, "tape_holds_input has 2 values but the chain has n_steps=3"),
        (dict(tape_holds_output=[1, 0, 1]), TypeError, r"tape_holds_output\[0\] must be a bool, got 1"),
        (dict(tape_holds_input="yes"), TypeError, "tape_holds_input must be a bool or a sequence"),
    ],
)
def test_shared_state_flag_validation(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=3, **kw)


def test_working_memory_fields_round_trip():
    c = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=2,
              forward_overhead=[3, 4], backward_overhead=5, adjoint_bytes=[1, 2, 3])
    assert c.has_overheads and Chain.from_json(c.to_json()) == c
    assert c.values("adjoint_bytes").tolist() == [1, 2, 3] and c.values("backward_overhead").tolist() == [5, 5]
    plain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=2)
    assert not plain.has_overheads and "overhead" not in plain.to_json()
    with pytest.raises(ValueError, match=r"forward_overhead\[1\] must be finite and >= 0"):
        Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1, n_steps=2, forward_overhead=[1, -1])
