"""Independent oracles for the planner tests: brute-force recurrences, written without the planner's code."""

from __future__ import annotations

import numpy as np


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
