"""revolve schedules in checkpoint_schedules' vocabulary, checked by the peer's own rules.

``Validator`` is a rewrite of the replay in checkpoint_schedules' tests/test_validity.py: the forward is
at ``n`` (None when unknown), WORK holds restart data ``ics`` and adjoint dependencies ``data`` (cleared by
every forward), RAM and DISK hold checkpoints keyed by the forward's start, a reverse needs the tapes of
its steps in WORK, a checkpoint loaded into WORK must cover the forward up to the adjoint's position, and
storage and WORK limits hold after every action. It runs on the adapter's plain tuples without the peer
installed; where it is installed, the same replay runs on the peer's objects and the forward steps are
compared with the peer's own Revolve and Multistage schedules.
"""

import pytest

import revolve
from revolve import Chain
from revolve.integrations.checkpoint_schedules import translate


class Validator:
    def __init__(self, n, limits, work_limit=1):
        self.N, self.limits, self.work_limit = n, limits, work_limit
        self.n, self.r = 0, 0
        self.ics, self.data = set(), set()
        self.store = {"RAM": {}, "DISK": {}}
        self.forward_steps = 0
        self.ended_forward = self.ended_reverse = False

    def step(self, name, *args):
        getattr(self, "_" + name)(*args)
        for st, limit in self.limits.items():
            assert len(self.store[st]) <= limit, (name, args, st, len(self.store[st]))
        assert min(1, len(self.ics)) + len(self.data) <= self.work_limit, (name, args)

    def _Forward(self, n0, n1, write_ics, write_adj_deps, storage):
        assert self.n is not None and n0 == self.n and n0 < n1 <= self.N - self.r
        self.forward_steps += n1 - n0
        self.n = n1
        self.ics.clear()
        self.data.clear()
        ics = set(range(n0, n1)) if write_ics else set()
        data = set(range(n0, n1)) if write_adj_deps else set()
        if storage in ("RAM", "DISK"):
            assert n0 not in self.store[storage]
            self.store[storage][n0] = (ics, data)
        elif storage == "WORK":
            self.ics |= ics
            self.data |= data
        else:
            assert storage == "NONE" and not ics and not data
        if self.ics or self.data:
            assert n0 == min(self.ics | self.data)

    def _Reverse(self, n1, n0, clear_adj_deps):
        assert self.ended_forward and n1 == self.N - self.r and n0 < n1
        assert self.data.issuperset(range(n0, n1)), (n1, n0, self.data)
        self.r += n1 - n0
        if clear_adj_deps:
            self.data.clear()

    def _load(self, n, frm, to, pop):
        assert not self.ics and not self.data
        assert n in self.store[frm]
        ics, data = self.store[frm].pop(n) if pop else self.store[frm][n]
        assert ics or data
        assert n < self.N - self.r
        assert to == "WORK"  # the adapter only loads into WORK
        self.n = n if n in ics else None
        self.ics |= ics
        if self.n is not None:
            assert self.ics.issuperset(range(self.n, self.N - self.r))
        self.data |= data

    def _Copy(self, n, frm, to):
        self._load(n, frm, to, pop=False)

    def _Move(self, n, frm, to):
        self._load(n, frm, to, pop=True)

    def _EndForward(self):
        assert self.n == self.N
        self.ended_forward = True

    def _EndReverse(self):
        assert self.r == self.N
        self.ended_reverse = True


def replay(schedule, limits, work_limit=1):
    v = Validator(schedule.n_steps, limits, work_limit)
    for act in translate(schedule):
        v.step(*act)
    assert v.ended_reverse
    return v


GRID = [(n, s) for n in (1, 2, 3, 5, 10, 17, 33, 64, 100) for s in range(1, 11)]


@pytest.mark.parametrize("n,s", GRID)
def test_binomial_is_valid_with_s_ram_checkpoints(n, s):
    v = replay(revolve.binomial(n, snapshots=s), {"RAM": s, "DISK": 0})
    # forward steps of the peer's counting: advances plus the taped steps, t(n, s) + n
    assert v.forward_steps == revolve.binomial_cost(n, snapshots=s) + n


@pytest.mark.parametrize("n,s", [(n, s) for n, s in GRID if n <= 64])
def test_optimal_on_a_uniform_chain_is_valid(n, s):
    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1000, n_steps=n)
    v = replay(revolve.optimal(chain, memory=1000 + s), {"RAM": s, "DISK": 0})
    assert v.forward_steps == revolve.binomial_cost(n, snapshots=s) + n


@pytest.mark.parametrize("n", [1, 2, 7, 30, 100])
@pytest.mark.parametrize("every", [1, 2, 3, 10])
def test_periodic_is_valid(n, every):
    every = min(every, n)
    ckpts = -(-n // every)
    # segment tapes but the last step's wait in RAM under their own keys
    v = replay(revolve.periodic(n, every=every), {"RAM": ckpts + every - 1, "DISK": 0})
    assert v.forward_steps == revolve.simulate(revolve.periodic(n, every=every), Chain(
        forward_cost=1, backward_cost=0, state_bytes=0, tape_bytes=0, n_steps=n)).time


@pytest.mark.parametrize("n", [1, 2, 5, 50])
def test_store_all_is_valid(n):
    v = replay(revolve.store_all(n), {"RAM": n - 1, "DISK": 0})
    assert v.forward_steps == n


def test_disk_snapshots_go_to_disk():
    acts = [a if not isinstance(a, revolve.Snapshot) or a.index == 0 else revolve.Snapshot(a.index, "disk")
            for a in revolve.binomial(20, snapshots=4)]
    sched = revolve.Schedule.from_actions(acts, n_steps=20)
    v = replay(sched, {"RAM": 1, "DISK": 3})
    assert v.forward_steps == revolve.binomial_cost(20, snapshots=4) + 20


def test_validator_catches_a_broken_stream():
    # the oracle can fail: a reverse without its tape
    v = Validator(2, {"RAM": 1, "DISK": 0})
    v.step("Forward", 0, 2, False, False, "WORK")
    v.step("EndForward")
    with pytest.raises(AssertionError):
        v.step("Reverse", 2, 1, True)


def test_unknown_level_is_named():
    sched = revolve.Schedule.from_actions([revolve.Snapshot(0, "nvme"), revolve.Advance(0, 1), revolve.Record(1),
                                           revolve.Reverse(1), revolve.Restore(0), revolve.Discard(0),
                                           revolve.Record(0), revolve.Reverse(0)], n_steps=2)
    with pytest.raises(ValueError, match="'nvme'.*levels="):
        list(translate(sched))
    assert ("Forward", 0, 1, True, False, "DISK") in list(translate(sched, levels={"nvme": "DISK"}))


# -- with the peer installed: its base class, its protocol, its own schedules ------------------------------

def _peer_replay(cp, n, limits):
    from checkpoint_schedules import StorageType
    from checkpoint_schedules.schedule import Copy, EndForward, EndReverse, Forward, Move, Reverse

    v = Validator(n, limits)
    assert cp.n == 0 and cp.r == 0 and cp.max_n == n
    for act in cp:
        if isinstance(act, Forward):
            v.step("Forward", act.n0, act.n1, act.write_ics, act.write_adj_deps, act.storage.name)
        elif isinstance(act, Reverse):
            v.step("Reverse", act.n1, act.n0, act.clear_adj_deps)
        elif isinstance(act, (Copy, Move)):
            v.step(type(act).__name__, act.n, act.from_storage.name, act.to_storage.name)
        elif isinstance(act, EndForward):
            v.step("EndForward")
        else:
            assert isinstance(act, EndReverse)
            v.step("EndReverse")
        assert v.n is None or v.n == cp.n
        assert v.r == cp.r
        if isinstance(act, EndReverse):
            break
    assert cp.is_exhausted and cp.uses_storage_type(StorageType.RAM) is True
    return v


@pytest.mark.parametrize("n,s", [(n, s) for n, s in GRID if n >= 2 and s < n])
def test_against_the_peers_own_schedules(n, s):
    cs = pytest.importorskip("checkpoint_schedules")
    from revolve.integrations.checkpoint_schedules import as_checkpoint_schedule

    cp = as_checkpoint_schedule(revolve.binomial(n, snapshots=s))
    assert isinstance(cp, cs.CheckpointSchedule)
    ours = _peer_replay(cp, n, {"RAM": s, "DISK": 0}).forward_steps
    peer = _peer_replay_counts(cs.MultistageCheckpointSchedule(n, s, 0), n)
    assert ours == peer
    if n <= 33:
        assert ours == _peer_replay_counts(cs.Revolve(n, s), n)


def _peer_replay_counts(cp, n):
    from checkpoint_schedules.schedule import EndReverse, Forward

    steps = 0
    for act in cp:
        if isinstance(act, Forward):
            steps += act.n1 - act.n0
        if isinstance(act, EndReverse):
            break
    return steps


def test_optimal_and_disk_through_the_peer_protocol():
    cs = pytest.importorskip("checkpoint_schedules")
    from checkpoint_schedules import StorageType
    from revolve.integrations.checkpoint_schedules import as_checkpoint_schedule

    chain = Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=1000, n_steps=30)
    cp = as_checkpoint_schedule(revolve.optimal(chain, memory=1004))
    assert _peer_replay(cp, 30, {"RAM": 4, "DISK": 0}).forward_steps == revolve.binomial_cost(30, snapshots=4) + 30
    assert not cp.uses_storage_type(StorageType.DISK)
    acts = [a if not isinstance(a, revolve.Snapshot) or a.index == 0 else revolve.Snapshot(a.index, "disk")
            for a in revolve.binomial(20, snapshots=4)]
    cp = as_checkpoint_schedule(revolve.Schedule.from_actions(acts, n_steps=20))
    _peer_replay(cp, 20, {"RAM": 1, "DISK": 3})
    assert cp.uses_storage_type(StorageType.DISK)


def test_missing_peer_names_the_install(monkeypatch):
    import builtins
    import revolve.integrations.checkpoint_schedules as mod

    real = builtins.__import__

    def no_peer(name, *a, **k):
        if name.startswith("checkpoint_schedules"):
            raise ImportError("no module")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_peer)
    monkeypatch.setattr(mod, "_CLASS", None)
    with pytest.raises(ImportError, match="pip install checkpoint-schedules"):
        mod.as_checkpoint_schedule(revolve.binomial(3, snapshots=1))


@pytest.mark.parametrize("n", [10, 50, 200])
def test_multilevel_is_valid_within_its_slots(n):
    if not hasattr(revolve, "multilevel"):
        pytest.skip("revolve.multilevel not available")
    sched = revolve.multilevel(n, slots={"ram": 3, "disk": 5}, io_cost={"disk": (2.0, 2.0)})
    v = replay(sched, {"RAM": 3, "DISK": 5})
    steps = revolve.simulate(sched, Chain(forward_cost=1, backward_cost=0, state_bytes=0, tape_bytes=0, n_steps=n))
    assert v.forward_steps == steps.advances + n


# -- online schedules (snapshots decided as steps arrive, translated once n is known) -----------------------

def _online_cases():
    for n, s in GRID:
        for algorithm in ("auto", "stumm-walther", "wang-moin"):
            for last in (True, False):
                # that algorithm's forward runs at most beta(s, 3) - 1 steps before the end
                if algorithm == "stumm-walther" and (n - 1 if last else n) > revolve.beta(s, 3) - 1:
                    continue
                yield n, s, algorithm, last


@pytest.mark.parametrize("n,s,algorithm,last", list(_online_cases()))
def test_online_schedules_are_valid_with_s_ram_checkpoints(n, s, algorithm, last):
    sched = revolve.online(snapshots=s, algorithm=algorithm).schedule(n, last_step_known=last)
    v = replay(sched, {"RAM": s, "DISK": 0})
    # the same forward steps as the stream itself: dropping unread snapshots removes no step
    assert v.forward_steps == revolve.simulate(sched).advances + n


def test_online_at_most_beta_s_2_is_the_offline_optimum_in_the_peers_counting():
    # Stumm and Walther 2010, Algorithm I: t(n, s) for n <= beta(s, 2)
    for s in range(1, 8):
        for n in range(1, revolve.beta(s, 2) + 1):
            v = replay(revolve.online(snapshots=s).schedule(n), {"RAM": s, "DISK": 0})
            assert v.forward_steps == revolve.binomial_cost(n, snapshots=s) + n, (n, s)


def test_unread_snapshots_are_not_written():
    sched = revolve.online(snapshots=3).schedule(30)
    acts = list(sched)
    written = {a.index for a in acts if isinstance(a, revolve.Snapshot)}
    read = {a.index for a in acts if isinstance(a, revolve.Restore)}
    assert written - read  # the online forward drops some unread
    out = list(translate(sched))
    assert {a[1] for a in out if a[0] == "Forward" and a[3]} == read
    # in the first forward, each checkpoint's forward runs on to the next checkpoint or taped step (its
    # restart data covers the gap): no plain advance follows it
    first = out[: out.index(("EndForward",))]
    for a, b in zip(first, first[1:]):
        if a[3]:
            assert b[3] or b[4], (a, b)
    # why: a checkpoint written over one step cannot restart a forward that must reach the adjoint two steps on
    for first, ok in (([("Forward", 0, 1, True, False, "RAM"), ("Forward", 1, 2, False, False, "WORK")], False),
                      ([("Forward", 0, 2, True, False, "RAM")], True)):
        v = Validator(3, {"RAM": 1, "DISK": 0})
        for act in first + [("Forward", 2, 3, False, True, "WORK"), ("EndForward",), ("Reverse", 3, 2, True)]:
            v.step(*act)
        if ok:
            v.step("Copy", 0, "RAM", "WORK")
        else:
            with pytest.raises(AssertionError):
                v.step("Copy", 0, "RAM", "WORK")


@pytest.mark.parametrize("n,s", [(2, 1), (7, 2), (21, 5), (50, 3), (100, 4), (100, 10)])
@pytest.mark.parametrize("algorithm", ["auto", "wang-moin"])
def test_online_through_the_peer_protocol(n, s, algorithm):
    cs = pytest.importorskip("checkpoint_schedules")
    from revolve.integrations.checkpoint_schedules import as_checkpoint_schedule

    sched = revolve.online(snapshots=s, algorithm=algorithm).schedule(n, last_step_known=False)
    cp = as_checkpoint_schedule(sched)
    assert isinstance(cp, cs.CheckpointSchedule)
    assert _peer_replay(cp, n, {"RAM": s, "DISK": 0}).forward_steps == revolve.simulate(sched).advances + n
