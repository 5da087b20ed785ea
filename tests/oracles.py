"""Independent oracles for the planner tests: brute-force recurrences, written without the planner's code."""

from __future__ import annotations

import math

import numpy as np


def closed_form(n, s):
    """t(n, s) = r n - C(s + r, r - 1), r the least with C(s + r, s) >= n, written from the formula alone."""
    if s >= n - 1:
        return n - 1
    r = 0
    while math.comb(s + r, s) < n:
        r += 1
    return r * n - math.comb(s + r, r - 1)


def brute_force_advances(n_max: int, s_max: int) -> np.ndarray:
    """T[n, s]: least advances to reverse n steps with s slots, by the recurrence of REFERENCES.md 1.

    T(1, s) = 0, T(n, 0) = inf for n >= 2, T(n, s) = min over 1 <= j < n of j + T(n - j, s - 1) + T(j, s).
    """
    INF = np.iinfo(np.int64).max // 4
    T = np.full((n_max + 1, s_max + 1), INF, dtype=np.int64)
    T[1, :] = 0
    for s in range(1, s_max + 1):
        for n in range(2, n_max + 1):
            j = np.arange(1, n)
            T[n, s] = np.min(j + T[n - j, s - 1] + T[j, s])
    return T


def brute_force_writes(n_max: int, s_max: int, T: np.ndarray) -> np.ndarray:
    """W[n, s]: fewest snapshot writes (besides x_0's) among the schedules that reach T[n, s]."""
    INF = np.iinfo(np.int64).max // 4
    W = np.full((n_max + 1, s_max + 1), INF, dtype=np.int64)
    W[1, :] = 0
    for s in range(1, s_max + 1):
        for n in range(2, n_max + 1):
            j = np.arange(1, n)
            total = j + T[n - j, s - 1] + T[j, s]
            ok = total == T[n, s]
            # x_j is written unless the right part is one step, recorded straight from the working state
            W[n, s] = np.min((n - j[ok] > 1) + W[n - j[ok], s - 1] + W[j[ok], s])
    return W


def exhaustive_optimum(F, B, S, T, memory, hin=None, hout=None, fo=None, bo=None, adj=None, path=None, ro=None,
                      working=None):
    """Least total time of any valid schedule whose held bytes never exceed ``memory``: Dijkstra over states.

    A state is (working state, stored states, live tapes, next step to reverse). Moves are every action of
    the vocabulary (any Advance length), with the chain's costs; Snapshot, Restore and Discard are free.
    Held bytes: the union of stored states and the states live tapes keep (``hin[i]``: tape i keeps x_i,
    ``hout[i]``: x_{i+1}), each once, plus the tapes, plus ``adj[a]`` where a is the next step to
    reverse + 1. Evaluating step l needs ``fo[l]`` on top (``ro[l]`` for a record, once its tape is held),
    and its input S[l] unless that is kept (an advance: for each step it runs), and reversing step i needs
    ``bo[i]`` on top of the held bytes before it.
    ``working`` (default: whether any overhead or adjoint is nonzero) says whether the chain models working
    memory, as ``Chain.has_overheads`` does (a chain given all-zero overheads does, so inputs count).
    Returns the least time, or inf when no schedule fits; a list passed as ``path`` receives the
    states along an optimal schedule. Independent of the planner code.
    """
    import heapq

    n = len(F)
    pre = [0.0]
    for f in F:
        pre.append(pre[-1] + f)
    start = (0, frozenset(), frozenset(), n)
    dist = {start: 0.0}
    parent = {start: None}
    heap = [(0.0, 0, start)]
    tick = 0

    hin = [False] * n if hin is None else list(hin)
    hout = [False] * n if hout is None else list(hout)

    fo = [0] * n if fo is None else list(fo)
    bo = [0] * n if bo is None else list(bo)
    adj = [0] * (n + 1) if adj is None else list(adj)

    def kept(stored, tapes):
        return set(stored) | {i for i in tapes if hin[i]} | {i + 1 for i in tapes if hout[i]}

    def held(stored, tapes, a):
        return sum(S[i] for i in kept(stored, tapes)) + sum(T[i] for i in tapes) + adj[a]

    ro = fo if ro is None else list(ro)
    working = (any(fo) or any(bo) or any(adj) or any(ro)) if working is None else working

    def running(l, stored, tapes, over=fo):
        """What evaluating step l adds: its overhead, and its input unless that is kept."""
        return over[l] + (S[l] if working and l not in kept(stored, tapes) else 0)

    while heap:
        d, _, state = heapq.heappop(heap)
        if d > dist.get(state, np.inf):
            continue
        cur, stored, tapes, a = state
        if a == 0:
            if path is not None:
                while state is not None:
                    path.insert(0, state)
                    state = parent[state]
            return d
        moves = []
        now = held(stored, tapes, a)
        if cur is not None:
            worst = 0
            for b in range(cur + 1, n + 1):
                worst = max(worst, running(b - 1, stored, tapes))
                if now + worst > memory:
                    break
                moves.append((pre[b] - pre[cur], (b, stored, tapes, a)))
            if cur not in stored and cur <= n:
                ns = stored | {cur}
                if held(ns, tapes, a) <= memory:
                    moves.append((0.0, (cur, ns, tapes, a)))
            if cur < a and cur < n and cur not in tapes:
                nt = tapes | {cur}
                if held(stored, nt, a) + running(cur, stored, nt, ro) <= memory:
                    moves.append((F[cur], (cur + 1, stored, nt, a)))
        for i in stored:
            if i != cur:  # restore
                moves.append((0.0, (i, stored, tapes, a)))
            moves.append((0.0, (cur, stored - {i}, tapes, a)))
        if a - 1 in tapes and now + bo[a - 1] <= memory:
            moves.append((B[a - 1], (None, stored, tapes - {a - 1}, a - 1)))  # rule 6: the working state ends
        for cost, ns in moves:
            nd = d + cost
            if nd < dist.get(ns, np.inf):
                dist[ns] = nd
                parent[ns] = state
                tick += 1
                heapq.heappush(heap, (nd, tick, ns))
    return np.inf


def random_schedule(n, rng, levels=("ram",)):
    """A random valid schedule: the DP's sub-problem structure with random splits and storage levels."""
    from revolve import Schedule, Snapshot
    from revolve.optimal import _rebuild

    zeros = np.zeros(n + 1, dtype=np.int64)

    def choose(i, k, m, kind):
        if k - i == 1 or rng.random() < 0.3:
            return 0
        return int(rng.integers(i + 1, k))

    acts = [Snapshot(a.index, str(rng.choice(levels))) if isinstance(a, Snapshot) else a
            for a in _rebuild(n, 0, choose, zeros, zeros)]
    return Schedule.from_actions(acts, n_steps=n, kind="random")


def allocator_peak(fn) -> int:
    """Peak bytes the CPU allocator holds while ``fn()`` runs, above what it held before: the running sum of
    torch.profiler's memory events, read without the adapter's meters (the benchmarks' meter,
    ``experiments/_common.allocator_peak``)."""
    import torch

    return experiments_common().allocator_peak(fn, torch.device("cpu"))


_LOADED: dict = {}


def experiments_common():
    """experiments/_common.py, the meters the benchmarks and the tests share (loaded once, by path)."""
    if "_common" not in _LOADED:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.spec_from_file_location(
            "_revolve_experiments_common", Path(__file__).resolve().parents[1] / "experiments" / "_common.py")
        _LOADED["_common"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_LOADED["_common"])
    return _LOADED["_common"]


def step_peak(run, model, x, weight) -> int:
    """The allocator's peak over one training step of ``run`` (``allocator_peak``), parameter gradients freed
    first; the output is held through the backward, as training code holds it, and the loss
    (out * weight).sum() creates only the output's gradient."""
    for p in model.parameters():
        p.grad = None

    def step():
        out = run(x)
        (out * weight).sum().backward()

    return allocator_peak(step)
