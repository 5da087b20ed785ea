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
    time beside what store-all would need; then checks d(loss)/d(nu) against central differences.
    """
    from . import format_bytes, gradient, parse_bytes, tune_allocator
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
    print(f"\nloss = {r.value:.12g}")
    print(f"|d loss / d u0| = {np.linalg.norm(r.grad_x0):.6g},  d loss / d nu = {float(r.grad_params['nu']):.10g}")
    print(f"peak memory held {format_bytes(r.stats.peak_bytes)} = {r.stats.peak_bytes / (n * m.tape_bytes):.2%} "
          f"of store-all, in {elapsed:.1f} s")

    # an independent check: central differences in nu (two more plain forward runs); a step of 1e-4 nu keeps
    # truncation (~eps^2) and cancellation (~1e-16 |loss| / eps) both far below the tolerance
    eps = 1e-4 * float(params["nu"])

    def run(nu):
        u = u0
        for i in range(n):
            u = step(u, {"nu": np.array(nu)}, i)
        return float(loss(u))

    fd = (run(float(params["nu"]) + eps) - run(float(params["nu"]) - eps)) / (2 * eps)
    rel = abs(fd - float(r.grad_params["nu"])) / max(abs(fd), 1e-300)
    print(f"check: central differences give d loss / d nu = {fd:.10g} (relative difference {rel:.1e})")
    return 0 if rel < 1e-4 else 1
