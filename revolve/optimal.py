"""Time-optimal schedules for heterogeneous chains under a memory budget in bytes.

The dynamic program of Beaumont, Eyraud-Dubois, Herrmann, Joly and Shilova (rotor), mapped onto revolve's
actions and memory model (NOTE [ Schedule invariants ] 8: stored states plus live tapes). Two families
of sub-problems, both reversing steps i..k-1 with m memory units available:

  E(i, k, m): x_i is stored (its bytes are part of m) and is the working state.
  W(i, k, m): x_i is the working state but is not stored.

  D(i, k, m) = F_i + B_i + W(i+1, k, m - t_i)                 record step i, keep its tape, go on
  E(i, k, m) = min( D(i, k, m),                                discard x_i first (it is never needed again)
                    min_{i<j<k} F_{i..j-1} + W(j, k, m - s_i) + E(i, j, m) )
                                                               advance to x_j, reverse [j, k), restore x_i
  W(i, k, m) = E(i, k, m) if m >= s_i (snapshot x_i) else D(i, k, m);   W(k, k, m) = 0

``optimal`` first solves these recurrences exactly, over the memory values that occur (``_solve_pareto``:
a Pareto list of (units, time) per sub-problem, sizes as exact integers, NOTE [ Exact sizes ] in
revolve.chain). When those lists grow too large, ``_solve`` fills them over ``slots`` memory units of
about ``memory / slots`` bytes with sizes rounded *up*, so every schedule returned fits the budget when
simulated with the true sizes; rounding the sizes *down* instead relaxes the problem, and the difference
between the two times is reported as the certified gap.

References:
    O. Beaumont, L. Eyraud-Dubois, J. Herrmann, A. Joly, A. Shilova. Optimal checkpointing for
    heterogeneous chains: how to train deep neural networks with limited memory. ACM TOMS 2024;
    arXiv:1911.13214. doi:10.1145/3640476
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

from ._check import check_int, check_real
from .actions import Action, Advance, Discard, Record, Restore, Reverse, Snapshot
from .chain import Chain, budget_limit
from .errors import InfeasibleBudget, RevolveInternalError
from .schedule import Schedule

__all__ = ["optimal", "frontier", "min_memory", "Frontier", "FrontierPoint"]

DEFAULT_SLOTS = 500
_MAX_WORK = 1e11  # element operations of the unit DP: a few minutes of numpy on one core (L = 1000 at 500 slots)
_MAX_TABLE_BYTES = 6 * 2**30
_BLOCK = 8  # starting points swept together by the unit DP (their left parts stay in cache)


# the chain's working-memory sizes, by the name ``_solve`` takes them under
_WORKING_FIELDS = (("fo", "forward_overhead"), ("ro", "record_overhead"), ("bo", "backward_overhead"),
                   ("adj", "adjoint_bytes"))


def _num(x: float) -> str:
    """A byte count for a message: whole numbers without a fraction, others exactly (repr)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _check_chain(where: str, chain) -> Chain:
    if not isinstance(chain, Chain):
        raise TypeError(f"{where}: chain must be a revolve.Chain, got {type(chain).__name__}")
    return chain


def _check_size(where: str, n: int, slots: int, tables: int = 2) -> None:
    # the unit DP's bound: W (and H) rows of n(n+1)/2 sub-problems over slots + 1 values, each split over up to n
    # points, and their copy by k (C); the memory windows (``_windows``) make the work and W smaller in practice
    # (about 0.65x on random chains)
    rows = (tables - 1) * n * (n + 1) / 2
    work = rows * n / 3 * (slots + 1)
    table = (rows + n * (n + 1) / 2) * (slots + 1) * 8
    if work > _MAX_WORK or table > _MAX_TABLE_BYTES:
        raise ValueError(
            f"{where}: a chain of {n} steps with slots={slots} needs about {work:.1e} operations and "
            f"{table / 2**30:.1f} GiB of tables; lower slots, group steps into fewer stages, or use "
            f"revolve.binomial for uniform chains (it plans any length in O(1) memory)"
        )


def _n_tables(chain: Chain) -> int:
    """Float tables the DP fills: E and W, and H where some tape keeps its output."""
    return 3 if chain.holds("tape_holds_output").any() else 2


class _Tables:
    """The unit DP's values, one row of W(i, k, m) (and of H where step i - 1 keeps its output) per sub-problem
    over the memory window it can be reached with, and W(0, n, m) as ``top`` (inf outside its window).

    Choices are not stored: ``choose`` recomputes the one the DP made at a visited (i, k, m) from the rows, with
    the same floating-point operations, so it is the DP's (ties: record first, then the smallest split point).
    """

    def __init__(self, n, M, F, B, s, t, hin, hout, work, mlow, start, W, H, top):
        self.n, self.M = n, M
        self.units_s, self.units_t = s, t
        self.hin, self.hout = hin, hout
        self.top = top
        self._F, self._B = F, B
        self._Fpre = np.concatenate(([0.0], np.cumsum(F)))
        self._work = work  # None, or the working-memory units (fo, ro, bo, adj)
        self._mlow, self._start = mlow, start
        self._W, self._H = W, H  # per i: array [k - i - 1, m - start[i]] (H: None where it is not used)

    def nbytes(self) -> int:
        """Bytes of the value rows held."""
        return sum(a.nbytes for a in self._W) + sum(a.nbytes for a in self._H if a is not None)

    def _value(self, table, i: int, k: int, m: int) -> float:
        """W or H (``table``) of sub-problem (i, k) with m units; W(k, k, m) = 0."""
        if i == k:
            return 0.0
        if m < 0:
            return np.inf
        return float(table[i][k - i - 1, m - self._start[i]])

    def choose(self, i: int, k: int, m: int, kind: str) -> int:
        """The DP's decision at (kind, i, k, m): 0 to record step i, j > i to advance to x_j first."""
        s, t, n = self.units_s, self.units_t, self.n
        if kind == "W" and m < s[i]:
            return 0  # x_i cannot be stored: record it now
        h = kind == "H"
        si = 0 if h else int(s[i])
        cin = int(s[i]) if self.hin[i] and not h else 0
        cout = int(s[i + 1]) if self.hout[i] else 0
        c = int(t[i]) + cin + cout
        rest = self._H if self.hout[i] else self._W
        FB = self._F[i] + self._B[i]
        D = FB + self._value(rest, i + 1, k, m - c) if m >= c else np.inf
        maxfo = None
        if self._work is not None:
            fo, ro, bo, adj = self._work
            back = int(adj[i + 1]) + int(bo[i])
            runs = int(adj[k]) + int(ro[i]) + (0 if self.hin[i] or h else int(s[i]))
            if m < c + max(runs, back):
                D = np.inf
            if k - i >= 2:
                maxfo = _max_forward(i, k, s, fo, adj)
        best, j = np.inf, 0
        if k - i >= 2:
            js = np.arange(i + 1, k)
            right = np.array([self._value(self._W, int(jj), k, m - si) for jj in js]) + self._Fpre[i + 1 : k]
            left_table = self._H if h else self._W
            left = self._W[i][: k - i - 1, m - self._start[i]] if not h else left_table[i][: k - i - 1, m - self._start[i]]
            cand = left + right
            if maxfo is not None:
                cand[m < si + maxfo] = np.inf
            a = int(np.argmin(cand))
            best, j = cand[a] - self._Fpre[i], int(js[a])
        if best < D:
            return j
        if D < np.inf:
            return 0
        raise RevolveInternalError(f"optimal: no feasible choice at ({kind}, {i}, {k}, {m})")


def _max_forward(i: int, k: int, s, fo, adj) -> np.ndarray:
    """For each split j = i+1 .. k-1: the most working memory of advancing from x_i to x_j (the adjoint of x_k
    held; the input of each later step counts, unheld), beyond what the sub-problem holds."""
    later = np.maximum.accumulate(s[i + 1 : k - 1] + fo[i + 1 : k - 1])
    return np.maximum(int(fo[i]), np.concatenate(([0], later))) + int(adj[k])


def _split_best(Lf: np.ndarray, Rf: np.ndarray, off: int, rows: int, width: int, lo: int, thr,
                buf: np.ndarray) -> np.ndarray:
    """min over the splits r < ``rows`` of left[r, m] + right[r, m] for m = lo .. width - 1, where the rows lie
    ``width`` apart in flat arrays: left[r, m] = Lf[r * width + m], right[r, m] = Rf[off + r * width + m].

    One addition over the flat range (the columns below ``lo`` of rows after the first ride along, unused: a
    1-D addition is several times faster in numpy than the same addition over a strided 2-D slice) and one
    minimum over r. ``thr[r]`` (non-decreasing in r, or None for no limit): the first column split r may use
    (working memory); then the splits a column may use are a prefix of the rows, so the minimum is a running
    minimum over r read at each column's last allowed row.
    """
    end = rows * width
    np.add(Lf[lo:end], Rf[off + lo : off + end], out=buf[lo:end])
    if thr is None:  # whole rows: a contiguous minimum is faster than one over the columns from lo
        return np.minimum.reduce(buf[:end].reshape(rows, width), axis=0)[lo:]
    cand = buf[:end].reshape(rows, width)[:, lo:]
    run = np.minimum.accumulate(cand, axis=0)
    last = np.searchsorted(thr, np.arange(lo, width), side="right") - 1  # the last split allowed per column
    best = run[np.maximum(last, 0), np.arange(width - lo)]
    best[last < 0] = np.inf
    return best


def _windows(n: int, M: int, s, c, every_top: bool) -> np.ndarray:
    """mlow[i, k]: the least memory units sub-problem (i, k) can be given on any path of the recursion from
    W(0, n, M) (from every m <= M with ``every_top``); the DP fills each row only from there up.

    The recursion passes the same m to a left part (i, j), m - s_i (at most) to a right part (j, k) and m - c_i
    (at most: the record's charge) to (i + 1, k); the most held outside (i, k) is the longest path to it, found
    by lengths in decreasing order: its parents (i, k' > k) and (i' < i, k) are longer.
    """
    NEG = -1
    mc = np.full((n + 2, n + 2), NEG, np.int64)  # row/column n + 1: padding read as "no parent" (index -1 too)
    suf = np.full((n + 2, n + 2), NEG, np.int64)  # suf[i, k] = max over k' >= k of mc[i, k']
    pre = np.full((n + 2, n + 2), NEG, np.int64)  # pre[i, k] = max over i' <= i of mc[i', k] + s[i']
    s = np.asarray(s, np.int64)
    c = np.asarray(c, np.int64)
    for length in range(n, 0, -1):
        i = np.arange(0, n - length + 1)
        k = i + length
        if length == n:
            v = np.array([M if every_top else 0], np.int64)
        else:
            v = suf[i, k + 1]
            im = i - 1  # -1 reads the padding row n + 1
            d = np.where(mc[im, k] >= 0, mc[im, k] + c[np.maximum(im, 0)], NEG)
            v = np.maximum(np.maximum(v, pre[im, k]), d)
        v = np.minimum(v, M)
        mc[i, k] = v
        suf[i, k] = np.maximum(v, suf[i, k + 1])
        pre[i, k] = np.maximum(v + s[i], pre[i - 1, k])
    return M - np.minimum(np.maximum(mc[: n + 1, : n + 1], 0), M)


def _solve(F, B, s_units, t_units, hin, hout, slots: int, fo=None, bo=None, adj=None, ro=None, *,
           every_top: bool = False) -> _Tables:
    """Fill the DP over memory units 0..slots, vectorized over m and over the split point j.

    With tapes that keep their step's input or output (``Chain.tape_holds_*``) a third family joins E
    and W: H(i, k, m), x_i is the working state and is held by the live tape of step i - 1, so storing
    it costs nothing and recording step i does not charge it again. Recording step i charges
    t_i, plus s_i if its tape keeps x_i and x_i is not already held (E's m includes s_i, so E and W
    charge alike), plus s_{i+1} if it keeps x_{i+1}; the rest is then H(i+1, ...) instead of W(i+1, ...).

    Working memory (units ``fo``, ``bo``, ``adj``; None when not modelled) only adds feasibility limits: in
    a sub-problem ending at x_k the adjoint of x_k is held, so advancing through step l needs adj_k + fo_l,
    plus s_l unless x_l is held, on top of what the sub-problem holds at that moment, recording step i
    the same with ro_i on top of what it charges, and reversing step i adj_{i+1} + bo_i on top of it.

    Only W is kept (E(i, k, m) is W(i, k, m) for m >= s_i and infeasible below), in one array per i whose rows
    (i, k) are contiguous over k, so the left parts E(i, j) of all split points are one flat range; while the DP
    runs, the same values plus F_{0..j-1} are also kept by k (``C``), and the right parts W(j, k) of a block of
    starting points are copied from there into a buffer with the block's row length, so each split's candidates
    are one 1-D addition and one minimum over j (``_split_best``). Each row is computed only over the window of
    memory values the recursion from W(0, n, slots) can reach (``_windows``; every m with ``every_top``), and
    left at inf below. Choices are recomputed at reconstruction (``_Tables.choose``) with the same floating-point
    operations. Time O(L^3 M) at most, memory O(L^2 M).
    """
    n = len(F)
    M = slots
    R = M + 1
    inf = np.inf
    F = np.asarray(F, float)
    B = np.asarray(B, float)
    s = np.asarray(s_units, np.int64)
    t = np.asarray(t_units, np.int64)
    hin = np.asarray(hin, bool)
    hout = np.asarray(hout, bool)
    Fpre = np.concatenate(([0.0], np.cumsum(F)))
    FB = F + B
    use_h = bool(hout.any())
    working = fo is not None
    work = (np.asarray(fo, np.int64), np.asarray(ro, np.int64), np.asarray(bo, np.int64),
            np.asarray(adj, np.int64)) if working else None
    c_rec = t + np.where(hin, s[:-1], 0) + np.where(hout, s[1:], 0)  # what recording step i charges (E, W)
    mlow = _windows(n, M, s, c_rec, every_top)
    s_l, hout_l = s.tolist(), hout.tolist()
    low = [int(mlow[i, i + 1]) for i in range(n)]  # the least m any row of i is computed from
    # Blocks of _BLOCK starting points i (descending), each swept over k ascending, i descending inside: every part
    # a sub-problem needs is done before it, and the block's left parts W[i] stay in cache from one k to the next.
    # The rows of a block's W[i] start at one origin o (the block's least window start, lowered by the spread of
    # its s_i) and have one length R - o; the right parts of each k are copied once per block from C[k] into
    # ``rb`` with that row length, from column base = o - s_min, so that for every i of the block and every m of
    # its window the right part W(j, k, m - s_i) lies in its own row of ``rb``, at a flat offset that does not
    # depend on j (``_split_best``).
    blocks = []
    for i_hi in range(n - 1, -1, -_BLOCK):
        i_lo = max(i_hi - _BLOCK + 1, 0)
        sb = s_l[i_lo : i_hi + 1]
        s_min = 0 if any(hout_l[i - 1] for i in range(max(i_lo, 1), i_hi + 1)) and use_h else min(sb)  # H: shift 0
        o = max(0, min(low[i_lo : i_hi + 1]) - (max(sb) - s_min))
        blocks.append((i_lo, i_hi, o, o - s_min))
    start = np.zeros(n + 1, np.int64)
    for i_lo, i_hi, o, _ in blocks:
        start[i_lo : i_hi + 1] = o
    start[n] = M
    W = [np.full((n - i, R - int(start[i])), inf) for i in range(n)]  # W[i][k - i - 1, m - start[i]] = W(i, k, m)
    Wf = [a.reshape(-1) for a in W]
    H = [np.full((n - i, R - int(start[i])), inf) if use_h and i > 0 and hout[i - 1] else None for i in range(n)]
    Hf = [None if a is None else a.reshape(-1) for a in H]
    # the same values by k, plus F_{0..j-1}: C[k][j, m] = W(j, k, m) + F_{0..j-1}, the right parts of k's splits
    C = [np.full((k, R), inf) for k in range(n + 1)]
    zeros = np.zeros(R)
    buf = np.zeros(max(n - 1, 1) * R)
    rb = np.full(max(n - 1, 1) * R, inf)
    # plain Python numbers for the per-sub-problem bookkeeping (numpy scalars cost more to index and compare)
    mlow_l, c_l, start_l = mlow.tolist(), c_rec.tolist(), start.tolist()
    FB_l, Fpre_l, hin_l = FB.tolist(), Fpre.tolist(), hin.tolist()
    t_l = t.tolist()
    if working:
        fo_, ro_, bo_, adj_ = work
        fo_l, ro_l, bo_l, adj_l = (a.tolist() for a in work)
    for i_lo, i_hi, o, base in blocks:
        Rb = R - o
        rbv = rb[: max(n - 1 - i_lo, 1) * Rb].reshape(-1, Rb)  # rbv[j - i_lo - 1, q] = C[k][j, base + q]
        q0 = max(0, -base)  # columns of C below 0 stay inf (read only where no window reaches)
        for k in range(i_lo + 1, n + 1):
            Ck = C[k]
            if k - 1 > i_hi:  # right parts from later blocks, done
                rbv[i_hi - i_lo : k - 1 - i_lo, q0:] = Ck[i_hi + 1 : k, base + q0 : base + Rb]
            for i in range(min(i_hi, k - 1), i_lo - 1, -1):
                ln = k - i
                lo = mlow_l[i][k]
                si = s_l[i]
                c = c_l[i]
                # D(i, k, m) = F_i + B_i + rest(m - c) for m = lo..M: record step i (E discards x_i first)
                if ln == 1:
                    rest, roff = zeros, 0
                else:
                    rest, roff = (H if hout_l[i] else W)[i + 1][ln - 2], start_l[i + 1]
                row = W[i][ln - 1, lo - o :]
                a = max(lo, c)
                if a <= M:
                    np.add(FB_l[i], rest[a - c - roff : R - c - roff], out=row[a - lo :])
                if working:
                    back = adj_l[i + 1] + bo_l[i]
                    floor = c + max(adj_l[k] + ro_l[i] + (0 if hin_l[i] else si), back)
                    row[: max(0, floor - lo)] = inf
                    maxfo = _max_forward(i, k, s, fo_, adj_) if ln >= 2 else None
                ma = max(lo, si)
                if ln >= 2 and ma <= M:
                    # E(i, k, m) = min(D, min_j F_{i..j-1} + W(j, k, m - s_i) + E(i, j, m)) for m = ma..M: the
                    # right part of split j = i+1+r, column m, is rbv[i - i_lo + r, m - s_i - base]
                    best = _split_best(Wf[i], rb, (i - i_lo) * Rb + o - si - base, ln - 1, Rb, ma - o,
                                       si + maxfo - o if working else None, buf)
                    best -= Fpre_l[i]
                    np.minimum(row[ma - lo :], best, out=row[ma - lo :])  # ties keep the record: fewer snapshots
                Crow = Ck[i, lo:]
                np.add(row, Fpre_l[i], out=Crow)
                if i > i_lo:  # a right part of the block's lower starting points at this k
                    q = max(lo, base)
                    rbv[i - i_lo - 1, q - base :] = Ck[i, q : base + Rb]
                if H[i] is not None:
                    # H(i, k, m) = min(F_i + B_i + rest(m - t_i - c_out), F_{i..j-1} + W(j, k, m) + H(i, j, m))
                    ch = t_l[i] + (s_l[i + 1] if hout_l[i] else 0)
                    Hrow = H[i][ln - 1, lo - o :]
                    a = max(lo, ch)
                    if a <= M:
                        np.add(FB_l[i], rest[a - ch - roff : R - ch - roff], out=Hrow[a - lo :])
                    if working:
                        Hrow[: max(0, ch + max(adj_l[k] + ro_l[i], back) - lo)] = inf
                    if ln >= 2:
                        best = _split_best(Hf[i], rb, (i - i_lo) * Rb + o - base, ln - 1, Rb, lo - o,
                                           maxfo - o if working else None, buf)
                        best -= Fpre_l[i]
                        np.minimum(Hrow, best, out=Hrow)
    del C, rb
    top = np.full(R, inf)
    if n:
        lo = int(mlow[0, n])
        top[lo:] = W[0][n - 1, lo - int(start[0]) :]
    else:
        top[:] = 0.0
    return _Tables(n, M, F, B, s, t, hin, hout, work, mlow, start, W, H, top)


class _TooLarge(Exception):
    """The Pareto lists outgrew their work limit (internal: ``optimal`` then plans in rounded units)."""




def _prune(mem: np.ndarray, time: np.ndarray, ch: np.ndarray, limit: int) -> tuple:
    """The Pareto-optimal points of (memory, time, choice) needing at most ``limit`` units: memory
    increasing, time strictly decreasing. Ties in memory and time keep a record (choice 0) over a split.
    """
    if mem.size and mem.max() > limit:  # no sub-problem is ever given more than the budget
        keep = mem <= limit
        mem, time, ch = mem[keep], time[keep], ch[keep]
    if mem.size <= 1:
        return mem, time, ch
    order = np.lexsort((time, mem))  # stable: among equal points the earlier part (a record) stays first
    mem, time, ch = mem[order], time[order], ch[order]
    keep = np.empty(mem.size, bool)
    keep[0] = True
    keep[1:] = time[1:] < np.minimum.accumulate(time)[:-1]
    return mem[keep], time[keep], ch[keep]


def _shift(lst: tuple, c: int, cost: float, floor: int) -> tuple:
    """The list of ``rest`` after charging c units and ``cost`` time, needing at least ``floor`` units."""
    mem, time, ch = lst
    if not mem.size:
        return lst
    mem = mem + c
    # points needing less than the floor all move onto it; of those only the last (fastest) survives
    start = max(int(np.searchsorted(mem, floor, side="right")) - 1, 0)
    mem = mem[start:].copy()
    mem[0] = max(mem[0], floor)
    return mem, time[start:] + cost, np.zeros(mem.size, np.int32)


def _at(lst: tuple, q: np.ndarray) -> np.ndarray:
    """The list's time with q units (the fastest point needing at most q); inf where none fits."""
    mem, time, _ = lst
    idx = np.searchsorted(mem, q, side="right") - 1
    return np.where(idx >= 0, time[np.maximum(idx, 0)], np.inf)


def _seg_at(pseg, pmem, ptime, qseg, q) -> np.ndarray:
    """Many lists at once: the time of list qseg[x] with q[x] units, for points sorted by (segment, memory)."""
    if not pseg.size:
        return np.full(q.size, np.inf)
    top = int(max(pmem.max(initial=0), q.max(initial=0))) + 1
    if (int(pseg.max(initial=0)) + 2) * top < 2**62:
        # one sorted key per point, segment-major: a search finds the last point of the query's segment
        # needing at most q units (or a point of an earlier segment, rejected below)
        idx = np.searchsorted(pseg * top + pmem, qseg * top + q, side="right") - 1
    else:  # memory values too wide for one int64 key: sort points and queries together instead
        npts = pseg.size
        order = np.lexsort((np.concatenate((np.zeros(npts, bool), np.ones(q.size, bool))),
                            np.concatenate((pmem, q)), np.concatenate((pseg, qseg))))
        # why this works: points are already in (segment, memory) order, so the last point seen so far
        # in sorted order is the one of greatest index
        last = np.maximum.accumulate(np.where(order < npts, order, -1))
        at_q = order >= npts
        idx = np.empty(q.size, np.int64)
        idx[order[at_q] - npts] = last[at_q]
    ok = idx >= 0
    ok[ok] = pseg[idx[ok]] == qseg[ok]
    return np.where(ok, ptime[np.maximum(idx, 0)], np.inf)


def _splits(i: int, lefts: list, rights: list, off: int, fcost: np.ndarray, floors) -> tuple:
    """Every split j = i+1 .. k-1 at once: F_{i..j-1} + right_j(m - off) + left_j(m), for m >= floors[j]."""
    nj = len(lefts)
    js = np.arange(nj)
    lseg = np.repeat(js, [a[0].size for a in lefts])
    rseg = np.repeat(js, [a[0].size for a in rights])
    lmem = np.concatenate([a[0] for a in lefts])
    rmem = np.concatenate([a[0] for a in rights])
    q = np.concatenate((lmem, rmem + off))
    qseg = np.concatenate((lseg, rseg))
    if floors is not None:
        q = np.maximum(q, floors[qseg])
    cost = fcost[qseg] + _seg_at(lseg, lmem, np.concatenate([a[1] for a in lefts]), qseg, q) \
        + _seg_at(rseg, rmem, np.concatenate([a[1] for a in rights]), qseg, q - off)
    ok = np.isfinite(cost)
    return q[ok], cost[ok], (qseg[ok] + i + 1).astype(np.int32)


def _solve_pareto(F, B, s, t, hin, hout, fo, ro, bo, adj, *, limit: int, max_points: float) -> dict:
    """The DP of ``_solve`` over the memory values that can occur instead of over every unit.

    Each sub-problem's time, as a function of the memory it is given, is a non-increasing step function;
    it is kept as its Pareto list of (units needed, time, choice) breakpoints. Sizes are exact integers
    (NOTE [ Exact sizes ] in revolve.chain), so nothing is rounded: the result is the optimum of the
    DP's class for every budget up to ``limit`` units at once. The families and their recurrences are ``_solve``'s:

      D(i, k) = F_i + B_i + rest(i+1, k) shifted by what recording step i charges
      E(i, k) = min(D(i, k) from s_i on, min_j F_{i..j-1} + W(j, k)(m - s_i) + E(i, j)(m))
      W(i, k) = min(D(i, k), E(i, k));   H(i, k) like E with x_i held by the tape of step i - 1

    Raises ``_TooLarge`` once more than ``max_points`` breakpoints have been combined, or early once the
    lengths left look set to pass that.
    """
    n = len(F)
    Fpre = np.concatenate(([0.0], np.cumsum(F)))
    working = fo is not None
    use_h = bool(np.any(hout))
    # nothing left to reverse: 0 units, time 0; in the sizes' dtype, so Python-integer sizes never meet an
    # int64 sum (which would overflow silently)
    base = (np.zeros(1, dtype=s.dtype), np.zeros(1), np.zeros(1, np.int32))
    E: dict = {}
    W: dict = {(k, k): base for k in range(n + 1)}
    H: dict = {(k, k): base for k in range(n + 1)} if use_h else {}
    work = 0
    for length in range(1, n + 1):
        before = work
        for i in range(0, n - length + 1):
            k = i + length
            si = int(s[i])
            cin = si if hin[i] else 0
            cout = int(s[i + 1]) if hout[i] else 0
            rest = H[i + 1, k] if hout[i] else W[i + 1, k]
            c = int(t[i]) + cin + cout
            floor_d = floor_h = 0
            maxfo = None
            if working:
                back = int(adj[i + 1]) + int(bo[i])
                floor_d = c + max(int(adj[k]) + int(ro[i]) + (0 if hin[i] else si), back)
                floor_h = int(t[i]) + cout + max(int(adj[k]) + int(ro[i]), back)
                if length >= 2:  # advancing from x_i (held) to x_j: x_l runs unheld, l = i+1 .. j-1
                    later = np.maximum.accumulate(s[i + 1 : k - 1] + fo[i + 1 : k - 1])
                    maxfo = np.maximum(int(fo[i]), np.concatenate(([0], later))) + int(adj[k])
            D = _shift(rest, c, F[i] + B[i], floor_d)
            parts = [_shift(D, 0, 0.0, si)]  # E may discard x_i first and record step i
            fcost = Fpre[i + 1 : k] - Fpre[i]
            if length >= 2:
                parts.append(_splits(i, [E[i, j] for j in range(i + 1, k)], [W[j, k] for j in range(i + 1, k)], si,
                                     fcost, None if maxfo is None else si + maxfo))
                work += parts[-1][0].size
            Ek = _prune(*(np.concatenate(x) for x in zip(*parts)), limit)
            E[i, k] = Ek
            W[i, k] = _prune(*(np.concatenate(x) for x in zip(D, Ek)), limit)
            if use_h and i > 0 and hout[i - 1]:
                parts = [_shift(rest, int(t[i]) + cout, F[i] + B[i], floor_h)]
                if length >= 2:
                    parts.append(_splits(i, [H[i, j] for j in range(i + 1, k)], [W[j, k] for j in range(i + 1, k)], 0,
                                         fcost, maxfo))
                    work += parts[-1][0].size
                H[i, k] = _prune(*(np.concatenate(x) for x in zip(*parts)), limit)
            if work > max_points:
                raise _TooLarge
        # give up early when the lengths left, at half this length's work each, would pass the limit
        if work + (work - before) * (n - length) / 2 > max_points:
            raise _TooLarge
    return {"E": E, "W": W, "H": H}


def _pareto_actions(lists: dict, m: int, s_u, t_u, hin, hout) -> list[Action]:
    """The schedule for W(0, n) with m units from the Pareto lists of ``_solve_pareto``."""
    n = len(t_u)

    def choose(i, k, mm, kind):
        mem, _, ch = lists[kind][i, k]
        idx = int(np.searchsorted(mem, mm, side="right")) - 1
        if idx < 0:
            raise RevolveInternalError(f"optimal: no feasible choice at ({kind}, {i}, {k}, {mm})")
        return int(ch[idx])

    return _rebuild(n, m, choose, s_u, t_u, hin, hout)


def _rebuild(n: int, m0: int, choose, s_u, t_u, hin=None, hout=None) -> list[Action]:
    """Rebuild a schedule from the DP's decisions, iteratively (no recursion limit).

    ``choose(i, k, m, kind)`` returns 0 to record step i now, or j > i to advance to x_j first; ``kind``
    is the sub-problem: "E" (x_i stored), "W" (x_i only the working state) or "H" (x_i held by the tape
    of step i - 1). Items are processed in output order, so ``cur`` always is the working state.
    """
    hin = np.zeros(n, bool) if hin is None else hin
    hout = np.zeros(n, bool) if hout is None else hout
    out: list[Action] = []
    cur = 0
    stored: set[int] = set()
    stack: list[tuple] = [("W", 0, n, m0)]
    while stack:
        item = stack.pop()
        if item[0] == "rev":
            out.append(Reverse(item[1]))
            continue
        kind, i, k, m = item
        if i == k:
            continue
        if m < 0:
            raise RevolveInternalError(f"optimal: negative memory at ({kind}, {i}, {k})")
        c = choose(i, k, m, kind)
        if c > 0 and i not in stored:
            out.append(Snapshot(i))  # x_i is needed again after the part beyond x_c
            stored.add(i)
            kind = "E" if kind == "W" else kind
        if i in stored and cur != i:
            out.append(Restore(i))  # a left part, after its right part moved the working state on
            cur = i
        if c == 0:  # record step i now; x_i is never needed again, so free it before the tape grows
            if i in stored:
                out.append(Discard(i))
                stored.discard(i)
            out.append(Record(i))
            cur = i + 1
            stack.append(("rev", i))
            used = int(t_u[i]) + (int(s_u[i]) if hin[i] and kind != "H" else 0) + (int(s_u[i + 1]) if hout[i] else 0)
            stack.append(("H" if hout[i] else "W", i + 1, k, m - used))
        else:  # advance to x_c, reverse [c, k) keeping x_i stored, then reverse [i, c) from x_i
            out.append(Advance(i, c))
            cur = c
            stack.append((kind, i, c, m))
            stack.append(("W", c, k, m - (int(s_u[i]) if kind == "E" else 0)))
    return out


def _actions(tables: _Tables, m: int) -> list[Action]:
    """The schedule for W(0, n, m) from the DP's tables (choices recomputed where the schedule goes)."""
    return _rebuild(tables.n, m, tables.choose, tables.units_s, tables.units_t, tables.hin, tables.hout)


def _units(sizes: np.ndarray, unit: float, *, up: bool) -> np.ndarray:
    q = sizes / unit
    # a relative slack keeps sizes that are exact multiples of the unit from rounding up by float noise
    q = np.ceil(q * (1 - 1e-12)) if up else np.floor(q * (1 + 1e-12))
    return np.maximum(q, 0).astype(np.int64)


def _aligned_unit(chain: Chain, memory: float, slots: int) -> tuple[float, int]:
    """The memory unit near ``memory / slots`` and the whole units in ``memory``.

    The unit is shrunk (by less than one part in ``size / unit``) so that the size holding the most bytes
    in the chain is a whole number of units: on uniform chains and layer stacks of one width nothing is
    lost to rounding at all.
    """
    unit = memory / slots
    sizes = np.concatenate((chain.values("state_bytes"), chain.values("tape_bytes")))
    sizes = sizes[sizes >= unit]
    if sizes.size:
        values, counts = np.unique(sizes, return_counts=True)
        size = float(values[np.argmax(values * counts)])
        unit = size / math.ceil(size / unit * (1 - 1e-12))
    return unit, int(math.floor(memory / unit * (1 + 1e-12)))


def _exact_unit(chain: Chain, memory: float) -> tuple[float, int] | None:
    """The greatest common divisor of the chain's sizes when they are all whole numbers (bytes), with the
    whole units in ``memory``; None when some size is fractional. With it the DP rounds nothing."""
    names = ("state_bytes", "tape_bytes", *(name for _, name in _WORKING_FIELDS))
    sizes = np.concatenate([chain.values(k) for k in names])
    sizes = sizes[sizes > 0]
    if not sizes.size or np.any(sizes != np.round(sizes)) or sizes.max() > 2**62:
        return None
    g = int(np.gcd.reduce(sizes.astype(np.int64)))
    return float(g), int(math.floor(memory / g))


_SIZE_FIELDS = ("state_bytes", "tape_bytes", *(name for _, name in _WORKING_FIELDS))
_INT_LIMIT = 2**60  # sums of sizes in int64 units stay below this, so nothing overflows (sentinel 2^61)


def _int_sizes(chain: Chain) -> tuple[dict[str, np.ndarray], Fraction, int]:
    """The chain's sizes in whole units of one exact unit (NOTE [ Exact sizes ] in revolve.chain).

    The unit is the greatest common divisor of the sizes (1 byte or coarser for whole-byte chains), so
    nothing is rounded. The arrays are int64 when every sum of sizes fits below 2^60, else Python
    integers (dtype object: slower, still exact). Returns (units, unit, a value above every sum).
    """
    ints, den = chain.exact_sizes()
    g = 0
    for name in _SIZE_FIELDS:
        for v in ints[name]:
            g = math.gcd(g, v)
    g = max(g, 1)
    total = sum(sum(ints[name]) for name in _SIZE_FIELDS) // g
    dtype = np.int64 if total < _INT_LIMIT else object
    out = {name: np.asarray([v // g for v in ints[name]], dtype=dtype) for name in _SIZE_FIELDS}
    return out, Fraction(g, den), (2**61 if dtype is np.int64 else 4 * total + 4)


def _min_memory_choice(chain: Chain) -> tuple[float, "_MinChoices"]:
    """The least peak memory of any schedule in the DP's class, with the choices that reach it.

    The same sub-problems as ``_solve`` (E, W, H), with the peak instead of the time as the value, in
    exact integer units (NOTE [ Exact sizes ]); the peak is returned as the float nearest it. All
    sub-problems of one length are solved at once (vectorized over i and the split point j).
    """
    n = chain.n_steps
    if n > _MAX_MIN_MEMORY_STEPS:  # checked before any array of n elements is made (optimal calls this too)
        raise ValueError(
            f"revolve.min_memory: a chain of {n} steps has {n * (n + 1) // 2:,} sub-problems; min_memory (and "
            f"optimal, which starts with it) plans chains of at most {_MAX_MIN_MEMORY_STEPS} steps (about a minute); "
            f"group steps into fewer stages, or use revolve.binomial for uniform chains (any length, O(1) memory)"
        )
    units, unit, inf = _int_sizes(chain)
    if units["state_bytes"].dtype == object and inf < 2 ** (_WIDE_BITS + 60):
        # sums beyond int64 but within two int64 limbs: exact at int64 speed (a few times slower, not 50x)
        ops = _WideOps
        units = {name: _Wide.of(v) for name, v in units.items()}
        inf = _Wide.of(np.array([2 ** (_WIDE_BITS + 60)], dtype=object))
    else:
        ops = _NumpyOps
    S, T = units["state_bytes"], units["tape_bytes"]
    FO, RO, BO, A = (units[name] for _, name in _WORKING_FIELDS)
    hin = chain.holds("tape_holds_input")
    hout = chain.holds("tape_holds_output")
    working = chain.has_overheads  # then a step's input counts while it runs, unless it is held
    W = ops.full((n + 1, n + 1), inf, S)
    E = ops.full((n + 1, n + 1), inf, S)
    H = ops.full((n + 1, n + 1), inf, S)
    ch = _MinChoices(n)
    idx = np.arange(n + 1)
    zero = ops.zeros((1,), S)
    W[idx, idx] = ops.zeros((n + 1,), S)
    H[idx, idx] = ops.zeros((n + 1,), S)
    X = S[:n] + FO if working else FO  # what advancing through step l needs beyond the adjoint, x_l unheld
    held_by_prev = np.concatenate(([False], hout[:-1]))  # x_i is held by the tape of step i - 1
    mx, where = ops.maximum, ops.where
    for length in range(1, n + 1):
        i = np.arange(0, n - length + 1)
        k = i + length
        cout = where(hout[i], S[i + 1], zero)
        rest = where(hout[i], H[i + 1, k], W[i + 1, k])
        back = A[i + 1] + BO[i]  # reversing step i
        c_h = T[i] + cout
        runs = A[k] + RO[i] + where(hin[i] | (not working), zero, S[i])  # recording step i
        D = c_h + where(hin[i], S[i], zero) + mx(mx(runs, back), rest)
        best = mx(S[i] + A[k], D)
        c = np.zeros(i.size, np.int64)
        has_h = held_by_prev[i]
        best_h = c_h + mx(mx(A[k] + RO[i], back), rest)
        c_hh = np.zeros(i.size, np.int64)
        if length >= 2:
            js = i[:, None] + np.arange(1, length)[None, :]  # split points j = i+1 .. k-1
            # advancing from x_i to x_j: the most working memory of steps i .. j-1 (x_i held, later inputs not)
            if length >= 3:
                later = ops.cummax1(X[i[:, None] + np.arange(1, length - 1)[None, :]])
                adv = mx(FO[i][:, None], ops.concat1((ops.zeros((i.size, 1), S), later)))
            else:
                adv = FO[i][:, None]
            adv = adv + A[k][:, None]
            wjk = W[js, k[:, None]]
            rows = np.arange(i.size)
            cand = mx(S[i][:, None] + mx(adv, wjk), E[i[:, None], js])
            a = ops.argmin1(cand)
            val = cand[rows, a]
            better = ops.less(val, best)
            best = where(better, val, best)
            c = np.where(better, js[rows, a], 0)
            if has_h.any():
                cand = mx(mx(adv, wjk), H[i[:, None], js])
                a = ops.argmin1(cand)
                val = cand[rows, a]
                better = ops.less(val, best_h)
                best_h = where(better, val, best_h)
                c_hh = np.where(better, js[rows, a], 0)
        E[i, k] = best
        ch.E[i, k] = c
        W[i, k] = ops.minimum(best, D)
        ch.W[i, k] = np.where(ops.less_equal(D, best), 0, c)
        H[i[has_h], k[has_h]] = best_h[has_h]
        ch.H[i[has_h], k[has_h]] = c_hh[has_h]
    return ops.to_int(W[0, n]) * unit.numerator / unit.denominator, ch


class _NumpyOps:
    """The min-memory recurrence's operations on int64 (or Python-integer) arrays: numpy's own."""

    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    less = staticmethod(np.less)
    less_equal = staticmethod(np.less_equal)

    @staticmethod
    def full(shape, value, like):
        return np.full(shape, value, dtype=like.dtype)

    @staticmethod
    def zeros(shape, like):
        return np.zeros(shape, dtype=like.dtype)

    @staticmethod
    def cummax1(a):
        return np.maximum.accumulate(a, axis=1)

    @staticmethod
    def concat1(parts):
        return np.concatenate(parts, axis=1)

    @staticmethod
    def argmin1(a):
        return np.argmin(a, axis=1)

    @staticmethod
    def to_int(x) -> int:
        return int(x)


_WIDE_BITS = 40  # the low limb's bits; the high limb holds the rest (below 2^62: values and the sentinel)


class _Wide:
    """Non-negative integers as two int64 limbs, value = h * 2^40 + l with 0 <= l < 2^40: exact sums up to 2^100
    with numpy's speed. Indexing, assignment and addition act on both limbs (broadcasting as numpy does)."""

    __slots__ = ("h", "l")

    def __init__(self, h, l):
        self.h, self.l = h, l

    @classmethod
    def of(cls, values) -> "_Wide":
        """From an array of Python integers (>= 0)."""
        vals = [int(v) for v in np.asarray(values, dtype=object).ravel().tolist()]
        shape = np.shape(values)
        mask = (1 << _WIDE_BITS) - 1
        return cls(np.array([v >> _WIDE_BITS for v in vals], np.int64).reshape(shape),
                   np.array([v & mask for v in vals], np.int64).reshape(shape))

    def __getitem__(self, key) -> "_Wide":
        return _Wide(self.h[key], self.l[key])

    def __setitem__(self, key, value: "_Wide") -> None:
        self.h[key] = value.h
        self.l[key] = value.l

    def __add__(self, other: "_Wide") -> "_Wide":
        h = self.h + other.h
        l = self.l + other.l
        carry = l >> _WIDE_BITS
        return _Wide(h + carry, l - (carry << _WIDE_BITS))

    @property
    def size(self) -> int:
        return self.h.size


class _WideOps:
    """The min-memory recurrence's operations on ``_Wide`` integers (lexicographic on the two limbs)."""

    @staticmethod
    def greater(a: _Wide, b: _Wide):
        return (a.h > b.h) | ((a.h == b.h) & (a.l > b.l))

    @staticmethod
    def less(a: _Wide, b: _Wide):
        return (a.h < b.h) | ((a.h == b.h) & (a.l < b.l))

    @staticmethod
    def less_equal(a: _Wide, b: _Wide):
        return ~_WideOps.greater(a, b)

    @staticmethod
    def where(cond, a: _Wide, b: _Wide) -> _Wide:
        return _Wide(np.where(cond, a.h, b.h), np.where(cond, a.l, b.l))

    @staticmethod
    def maximum(a: _Wide, b: _Wide) -> _Wide:
        return _WideOps.where(_WideOps.greater(a, b), a, b)

    @staticmethod
    def minimum(a: _Wide, b: _Wide) -> _Wide:
        return _WideOps.where(_WideOps.less(a, b), a, b)

    @staticmethod
    def full(shape, value: _Wide, like) -> _Wide:
        return _Wide(np.full(shape, value.h.item(0), np.int64), np.full(shape, value.l.item(0), np.int64))

    @staticmethod
    def zeros(shape, like) -> _Wide:
        return _Wide(np.zeros(shape, np.int64), np.zeros(shape, np.int64))

    @staticmethod
    def cummax1(a: _Wide) -> _Wide:
        """Running maximum along axis 1, by doubling (log2 of the width passes)."""
        h, l = a.h.copy(), a.l.copy()
        shift = 1
        while shift < h.shape[1]:
            ph, pl = h[:, :-shift].copy(), l[:, :-shift].copy()
            th, tl = h[:, shift:], l[:, shift:]
            take = (ph > th) | ((ph == th) & (pl > tl))
            th[take] = ph[take]
            tl[take] = pl[take]
            shift *= 2
        return _Wide(h, l)

    @staticmethod
    def concat1(parts) -> _Wide:
        return _Wide(np.concatenate([p.h for p in parts], axis=1), np.concatenate([p.l for p in parts], axis=1))

    @staticmethod
    def argmin1(a: _Wide):
        """The first index of the least value along axis 1 (as numpy's argmin)."""
        low = np.where(a.h == a.h.min(axis=1)[:, None], a.l, np.iinfo(np.int64).max)
        return np.argmin(low, axis=1)

    @staticmethod
    def to_int(x: _Wide) -> int:
        return (int(x.h) << _WIDE_BITS) + int(x.l)


class _MinChoices:
    """``_min_memory_choice``'s decisions, read as ``ch[kind, i, k]`` (0: record step i, j: advance to x_j)."""

    def __init__(self, n: int):
        ctype = np.int16 if n < 2**15 else np.int32
        self.E = np.zeros((n + 1, n + 1), ctype)
        self.W = np.zeros((n + 1, n + 1), ctype)
        self.H = np.zeros((n + 1, n + 1), ctype)

    def __getitem__(self, key: tuple) -> int:
        kind, i, k = key
        return int(getattr(self, kind)[i, k])


def min_memory(chain: Chain) -> float:
    """The smallest budget in bytes with which ``revolve.optimal`` finds a schedule for ``chain``.

    Computed exactly (NOTE [ Exact sizes ] in revolve.chain), in O(L^3) time and O(L^2) memory for L
    steps. It is the minimum over the DP's class of schedules: without working memory that is the true
    minimum on every chain the exhaustive search was run on; with working memory (overheads, adjoints)
    a schedule that records an earlier step while a later step's tape is live can peak lower.

    Raises:
        ValueError: a chain too long for the O(L^3) recurrence (the message says the limit).

    Example:
        >>> from revolve import Chain
        >>> min_memory(Chain(forward_cost=1, backward_cost=1, state_bytes=10, tape_bytes=100, n_steps=5))
        110.0
    """
    where = "revolve.min_memory"
    chain = _check_chain(where, chain)
    _check_min_memory_size(where, chain.n_steps)
    return _min_memory_choice(chain)[0]


_MAX_MIN_MEMORY_STEPS = 2000  # the O(L^3) recurrence: about a minute in numpy at this length


def _check_min_memory_size(where: str, n: int) -> None:
    if n > _MAX_MIN_MEMORY_STEPS:
        raise ValueError(
            f"{where}: a chain of n_steps={n} is too long for the exact minimal-memory recurrence (O(L^3) time, "
            f"at most {_MAX_MIN_MEMORY_STEPS} steps); group steps into fewer stages, or use revolve.binomial "
            f"for uniform chains"
        )


def _plan_tables(chain: Chain, unit: float, slots: int, *, up: bool, every_top: bool = False) -> _Tables:
    F = chain.values("forward_cost")
    B = chain.values("backward_cost")
    work = {}
    if chain.has_overheads:
        work = {k: _units(chain.values(name), unit, up=up) for k, name in _WORKING_FIELDS}
    return _solve(F, B, _units(chain.values("state_bytes"), unit, up=up), _units(chain.values("tape_bytes"), unit, up=up),
                  chain.holds("tape_holds_input"), chain.holds("tape_holds_output"), slots, **work, every_top=every_top)


def optimal(chain: Chain, *, memory: float, slots: int = DEFAULT_SLOTS, lower_bound: bool = True) -> Schedule:
    """The fastest schedule whose peak memory (stored states + live tapes) is at most ``memory`` bytes.

    Total time is the chain's forward cost of every advance and record plus the backward costs. Tapes may
    be recorded during a sweep and held, so store-all, periodic and binomial schedules are all candidates.

    Arguments:
        chain: the steps' costs and sizes.
        memory: the budget in bytes (> 0).
        slots: memory units the budget is divided into (default 500) when the exact plan is too large to
            compute (see below). Sizes are then rounded up to whole units, so the result always fits;
            more slots waste less memory to rounding but the planning time grows linearly with them (and
            as L^3 with the number of steps L).
        lower_bound: with rounded units, also solve the relaxed problem (sizes rounded down) to certify
            how much time the rounding may cost; doubles that planning time.

    The plan is exact whenever the Pareto lists of the DP (one per sub-problem, over the memory values
    that occur, sizes as exact integers: NOTE [ Exact sizes ]) stay within their work limit: then it is
    the fastest schedule of the DP's class, never slower than store-all, periodic, binomial or the
    minimal-memory plan within the same budget, and ``params["method"]`` is "exact". Otherwise it is
    "units" and ``params["certified_gap"]`` bounds the time rounding may have lost.

    Returns:
        A ``Schedule`` (kind "optimal") whose params hold the budget, the slots, the method ("store_all",
        "exact", "units" or, warned, "min_memory"), the predicted time and, where known, a lower bound on
        the optimal time and the certified gap (also named ``discretization_loss``) between them.

    Raises:
        InfeasibleBudget: no schedule fits; its ``minimum`` (and message) give the smallest budget that does.
        ValueError, TypeError: a non-positive or non-finite budget, slots < 1, or a chain too large to plan.

    Example:
        >>> from revolve import Chain, simulate
        >>> chain = Chain(forward_cost=[1, 5, 1, 5], backward_cost=2, state_bytes=[1, 8, 1, 8, 1], tape_bytes=[4, 16, 4, 16])
        >>> s = optimal(chain, memory=30)
        >>> simulate(s, chain).peak_memory <= 30
        True

    References:
        Beaumont, Eyraud-Dubois, Herrmann, Joly, Shilova, ACM TOMS 2024, arXiv:1911.13214.
    """
    where = "revolve.optimal"
    chain = _check_chain(where, chain)
    memory = check_real(where, "memory", memory, positive=True)
    slots = check_int(where, "slots", slots, minimum=1)
    n = chain.n_steps
    _check_size(where, n, slots)  # first without _n_tables, which makes n booleans
    _check_size(where, n, slots, _n_tables(chain))
    need, min_choice = _min_memory_choice(chain)
    if need > memory:  # the same comparison as the simulator's: exact peak, rounded once (NOTE [ Exact sizes ])
        from .units import format_bytes

        # Without working memory the DP's minimum is the true one (exhaustive search agrees on every chain
        # tried); with it, an interleaved schedule outside the class can need less (docs/theory.md)
        within = " in revolve.optimal's class of schedules" if chain.has_overheads else ""
        raise InfeasibleBudget(
            f"{where}: no schedule{within} fits in memory={_num(memory)} bytes ({format_bytes(memory)}); the "
            f"smallest budget with which one exists is {_num(need)} bytes ({format_bytes(need)})"
            + ("; with working memory a schedule that records an earlier step while a later tape is live can "
               "need less (docs/theory.md, 'Against exhaustive search')" if within else ""),
            budget=memory,
            minimum=need,
        )
    params: dict = {"memory": memory, "slots": slots}
    from .baselines import store_all
    from .simulator import simulate

    everything = simulate(store_all(n), chain)
    if everything.peak_memory <= memory:  # no recomputation at all: nothing is faster
        params.update(predicted_time=everything.time, lower_bound_time=everything.time, discretization_loss=0.0,
                      certified_gap=0.0, method="store_all")
        return Schedule.from_actions(list(store_all(n)), n_steps=n, kind="optimal", params=params)
    planned = _optimal_pareto(chain, memory)
    if planned is not None:
        actions, extra = planned
        params.update(extra)
        return Schedule.from_actions(actions, n_steps=n, kind="optimal", params=params)
    # Too many distinct memory values for exact lists: the DP over ``slots`` rounded units.
    # Near the minimum, rounding sizes up to units can lose every plan: refine the units (while the work
    # allows), first to the exact unit (the greatest common divisor of integral sizes: no rounding at all).
    units = [_aligned_unit(chain, memory, slots)]
    exact = _exact_unit(chain, memory)
    if exact is not None and exact[1] <= slots:  # no more units than asked for, and nothing rounded
        units = [exact]
    elif exact is not None and (exact[1] <= 16 * slots or n**3 / 6 * exact[1] <= 5e8) \
            and n * (n + 1) / 2 * (exact[1] + 1) * 8 * (_n_tables(chain) - 1) <= 2**30:  # affordable: seconds, under 1 GiB
        units.insert(0, exact)  # exact first: a coarser unit's first feasible plan may be slower
    units += [_aligned_unit(chain, memory, slots * refine) for refine in (4, 16)]
    for attempt, (unit, m) in enumerate(units):
        if attempt:
            try:
                _check_size(where, n, m, _n_tables(chain))
            except ValueError:
                break
        tables = None  # the previous attempt's tables are freed before the next are filled
        tables = _plan_tables(chain, unit, m, up=True)
        predicted = float(tables.top[m])
        if math.isfinite(predicted):
            params["slots"] = m
            break
    if not math.isfinite(predicted):
        # The budget fits a schedule but rounding sizes up to units lost it: use the minimal-memory plan.
        warnings.warn(
            f"{where}: memory={_num(memory)} is within rounding of the minimum {_num(need)}; returning the "
            f"minimal-memory schedule, which may be slower than optimal (raise slots to refine)",
            stacklevel=2,
        )
        actions = _min_memory_actions(chain, min_choice)
        params.update(predicted_time=None, method="min_memory")
        return Schedule.from_actions(actions, n_steps=n, kind="optimal", params=params)
    actions = _actions(tables, m)
    del tables  # the plan is rebuilt: free its tables before the relaxed pass fills its own
    params.update(predicted_time=predicted, method="units")
    if lower_bound:
        relaxed = _plan_tables(chain, unit, m, up=False)
        bound = float(relaxed.top[m])
        params["lower_bound_time"] = bound
        params["discretization_loss"] = params["certified_gap"] = max(0.0, predicted - bound)
    return Schedule.from_actions(actions, n_steps=n, kind="optimal", params=params)


_MAX_POINTS = 5e6  # breakpoints the exact lists may combine (a few seconds) before ``optimal`` plans in rounded units
_MAX_TRIPLES = 3e6  # (i, j, k) split triples, n^3 / 6: beyond it (n above ~260) the lists' Python loop is too slow


def _pareto_lists(chain: Chain, units: dict, limit: int) -> dict:
    """Run ``_solve_pareto`` on the chain with the given integer sizes."""
    work = {}
    if chain.has_overheads:
        work = {k: units[name] for k, name in _WORKING_FIELDS}
    else:
        work = dict(fo=None, ro=None, bo=None, adj=None)
    return _solve_pareto(chain.values("forward_cost"), chain.values("backward_cost"), units["state_bytes"],
                         units["tape_bytes"], chain.holds("tape_holds_input"), chain.holds("tape_holds_output"),
                         limit=min(limit, 2**62) if units["state_bytes"].dtype != object else limit,
                         max_points=_MAX_POINTS, **work)


def _best_point(lists: dict, n: int, limit: int) -> tuple[int, float]:
    """The index and time of the fastest plan of W(0, n) needing at most ``limit`` units (-1, inf if none)."""
    mem, time, _ = lists["W"][0, n]
    idx = int(np.searchsorted(mem, min(limit, 2**62) if mem.dtype != object else limit, side="right")) - 1
    return idx, (float(time[idx]) if idx >= 0 else math.inf)


def _optimal_pareto(chain: Chain, memory: float) -> tuple[list[Action], dict] | None:
    """The exact plan from Pareto lists (NOTE [ Exact sizes ]); None when the lists would be too large.

    Sizes are exact integers, so the plan is the optimum of the DP's class: its certified gap is 0.
    """
    n = chain.n_steps
    if n**3 / 6 > _MAX_TRIPLES:
        return None
    units, unit, _ = _int_sizes(chain)
    limit = budget_limit(memory, unit)
    try:
        lists = _pareto_lists(chain, units, limit)
    except _TooLarge:
        return None
    idx, predicted = _best_point(lists, n, limit)
    if idx < 0:
        raise RevolveInternalError(f"optimal: the exact lists find no plan within memory={memory!r}, "
                                   f"though min_memory says one exists")
    m = int(lists["W"][0, n][0][idx])  # the units this plan needs: the sub-problems are rebuilt from it
    actions = _pareto_actions(lists, m, units["state_bytes"], units["tape_bytes"],
                              chain.holds("tape_holds_input"), chain.holds("tape_holds_output"))
    return actions, {"predicted_time": predicted, "method": "exact", "lower_bound_time": predicted,
                     "discretization_loss": 0.0, "certified_gap": 0.0}


def _min_memory_actions(chain: Chain, ch: dict) -> list[Action]:
    """The schedule reaching ``min_memory(chain)``, rebuilt from ``_min_memory_choice``'s choices ``ch``."""
    n = chain.n_steps
    zeros = np.zeros(n + 1, dtype=np.int64)
    return _rebuild(n, 0, lambda i, k, m, kind: ch[(kind, i, k)], zeros, zeros,
                    chain.holds("tape_holds_input"), chain.holds("tape_holds_output"))


@dataclass(frozen=True)
class FrontierPoint:
    """One Pareto-optimal plan: its simulated peak memory (bytes), its time, and the budget that yields it."""

    memory: float
    time: float
    budget: float


class Frontier:
    """The Pareto frontier of (peak memory, time) of a chain, from one DP table.

    Attributes:
        points: Pareto-optimal plans, by increasing memory (decreasing time).
        chain: the chain.
        slots: memory units used.
    """

    def __init__(self, chain: Chain, points: list[FrontierPoint], slots: int, unit: float, tables: _Tables):
        self.chain = chain
        self.points = points
        self.slots = slots
        self._unit = unit
        self._tables = tables

    def schedule(self, memory: float) -> Schedule:
        """The fastest schedule on this frontier whose peak is at most ``memory`` bytes."""
        fits = [p for p in self.points if p.memory <= memory]
        if not fits:
            raise InfeasibleBudget(
                f"revolve.Frontier.schedule: no plan on the frontier fits in {memory:.0f} bytes; the "
                f"smallest is {self.points[0].memory:.0f}",
                budget=memory,
                minimum=self.points[0].memory,
            )
        p = fits[-1]
        m = int(round(p.budget / self._unit))
        return Schedule.from_actions(
            _actions(self._tables, m), n_steps=self.chain.n_steps, kind="optimal",
            params={"memory": p.budget, "slots": self.slots, "predicted_time": p.time},
        )

    def save_csv(self, path) -> None:
        """Write ``memory_bytes,time,budget_bytes`` rows."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["memory_bytes", "time", "budget_bytes"])
            for p in self.points:
                w.writerow([repr(p.memory), repr(p.time), repr(p.budget)])

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[FrontierPoint]:
        return iter(self.points)

    def __str__(self) -> str:
        from .units import format_bytes

        lines = [f"{'peak memory':>14}  {'time':>14}", *(f"{format_bytes(p.memory):>14}  {p.time:>14.6g}" for p in self.points)]
        return "\n".join(lines)


def frontier(chain: Chain, *, slots: int = DEFAULT_SLOTS, max_memory: float | None = None) -> Frontier:
    """The Pareto frontier of peak memory against time, across all budgets, from one DP table.

    The budget range [0, max_memory] (default: the memory of store-all, which reaches the least time) is
    divided into ``slots`` units; every budget's optimum is read from the same table, and each plan on
    the frontier is simulated to report its true peak memory.

    Example:
        >>> from revolve import Chain
        >>> f = frontier(Chain(forward_cost=1, backward_cost=1, state_bytes=1, tape_bytes=4, n_steps=8), slots=32)
        >>> f.points[-1].time   # store-all: 8 forwards + 8 backwards
        16.0
    """
    from .simulator import simulate

    where = "revolve.frontier"
    chain = _check_chain(where, chain)
    slots = check_int(where, "slots", slots, minimum=1)
    n = chain.n_steps
    _check_size(where, n, slots)  # first without _n_tables, which makes n booleans
    _check_size(where, n, slots, _n_tables(chain))
    if max_memory is None:
        from .baselines import store_all

        max_memory = simulate(store_all(n), chain).peak_memory
        max_memory = max(max_memory, _min_memory_choice(chain)[0])
        if max_memory == 0:  # nothing has a size: any positive budget holds everything (one point, store-all)
            max_memory = 1.0
    max_memory = check_real(where, "max_memory", max_memory, positive=True)
    unit = max_memory / slots
    tables = _plan_tables(chain, unit, slots, up=True, every_top=True)
    points: list[FrontierPoint] = []
    last_time = np.inf
    for m in range(slots + 1):
        t = float(tables.top[m])
        if t < last_time:
            sched = Schedule.from_actions(_actions(tables, m), n_steps=n)
            peak = simulate(sched, chain).peak_memory
            points.append(FrontierPoint(memory=peak, time=t, budget=m * unit))
            last_time = t
    # keep the Pareto-optimal ones (a later budget's plan may happen to peak lower than an earlier one's)
    points.sort(key=lambda p: (p.memory, p.time))
    pareto: list[FrontierPoint] = []
    for p in points:
        if not pareto or p.time < pareto[-1].time:
            pareto.append(p)
    return Frontier(chain, pareto, slots, unit, tables)
