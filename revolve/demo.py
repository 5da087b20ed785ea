"""The built-in demo (``revolve demo``): the gradient of a Burgers simulation under a memory budget."""

from __future__ import annotations

import time

import numpy as np

DEFAULT_POINTS = 50_000
DEFAULT_STEPS = 2_000
DEFAULT_MEMORY = "64MiB"


def run_demo(*, steps: int | None = None, points: int | None = None, memory: str | None = None) -> int:
    """Differentiate a viscous Burgers simulation with respect to its initial state and viscosity.

    Plans a schedule within the memory budget, runs it, and prints the plan, the measured peak memory and
    time beside what store-all would need, with one line on each figure; then checks d(loss)/d(nu) and
    d(loss)/d(u0) along a random direction against central differences. Returns 0 when both agree to 1e-4.
    """
    from . import format_bytes, gradient, parse_bytes, tune_allocator
    from ._io import Progress
    from .examples import burgers
    from .executor import measure_step, plan_for_memory

    n = steps or DEFAULT_STEPS
    N = points or DEFAULT_POINTS
    budget = parse_bytes(memory or DEFAULT_MEMORY, where="revolve demo", name="--memory")
    tune_allocator()
    step, u0, params, loss = burgers(N)
    print(f"revolve demo: viscous Burgers equation, {N:,} grid points, {n:,} RK2 steps (dt = {step.dt:.3g})")
    print("gradient of the final energy with respect to the initial state u0 and the viscosity nu\n")

    m = measure_step(step, u0, params)
    plan = plan_for_memory(m, n, budget)
    print(f"one step: state {format_bytes(m.state_bytes)}, tape {format_bytes(m.tape_bytes)}")
    print(f"store-all would hold {format_bytes(n * m.tape_bytes)} of tapes; budget {format_bytes(budget)}")
    print(f"plan: {plan!r}\n")

    t = time.perf_counter()
    r = gradient(step, u0, n_steps=n, loss=loss, params=params, schedule=plan)
    elapsed = time.perf_counter() - t
    print(r.stats)
    print(f"  records: each step run once with taping, right before its reverse ({r.stats.records:,})")
    print(f"  advances: steps run again without taping, to rebuild a state from the nearest snapshot "
          f"({r.stats.advances:,}; forward evaluations = records + advances)")
    print("  recomputation ratio: forward evaluations / steps (1.000 is store-all: no step run twice)")
    print(f"\nloss = {r.value:.12g}")
    print(f"|d loss / d u0| = {np.linalg.norm(r.grad_x0):.6g},  d loss / d nu = {float(r.grad_params['nu']):.10g}")
    print(f"peak memory held {format_bytes(r.stats.peak_bytes)} = {r.stats.peak_bytes / (n * m.tape_bytes):.2%} "
          f"of store-all, in {elapsed:.1f} s")

    # independent checks by central differences, four plain forward runs: in nu, and in u0 along a random
    # direction v (d loss / d u0 . v). Relative steps of 1e-4 (nu) and 1e-6 (u0) keep truncation (~eps^2)
    # and cancellation (~1e-16 |loss| / eps) both far below the tolerance.
    progress = Progress(4 * n, "revolve demo: finite-difference runs")

    def run(u, nu):
        for i in range(n):
            u = step(u, {"nu": np.array(nu)}, i)
            progress.update()
        return float(loss(u))

    nu0 = float(params["nu"])
    eps = 1e-4 * nu0
    fd_nu = (run(u0, nu0 + eps) - run(u0, nu0 - eps)) / (2 * eps)
    v = np.random.default_rng(0).standard_normal(u0.shape)
    v *= np.linalg.norm(u0) / np.linalg.norm(v)
    h = 1e-6
    fd_u0 = (run(u0 + h * v, nu0) - run(u0 - h * v, nu0)) / (2 * h)
    progress.close()
    rel_nu = abs(fd_nu - float(r.grad_params["nu"])) / max(abs(fd_nu), 1e-300)
    ad_u0 = float(np.vdot(r.grad_x0, v))
    rel_u0 = abs(fd_u0 - ad_u0) / max(abs(fd_u0), 1e-300)
    print(f"check: central differences give d loss / d nu = {fd_nu:.10g} (relative difference {rel_nu:.1e})")
    print(f"check: central differences give d loss / d u0 . v = {fd_u0:.10g} against {ad_u0:.10g} "
          f"(v random; relative difference {rel_u0:.1e})")
    return 0 if rel_nu < 1e-4 and rel_u0 < 1e-4 else 1
