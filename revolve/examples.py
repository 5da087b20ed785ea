"""Example simulations for the executor, the demo and the experiments.

``burgers`` is the 1-D viscous Burgers equation u_t + u u_x = nu u_xx on a periodic grid, integrated with
Heun's method (explicit RK2); ``lorenz`` is the Lorenz system integrated with classical RK4. Each returns
(step, x0, params, loss) ready for ``revolve.gradient``.
"""

from __future__ import annotations

import numpy as np

from . import ad

__all__ = ["burgers", "lorenz"]


def burgers(points: int = 100_000, *, nu: float = 0.01, cfl: float = 0.2, length: float = 2 * np.pi):
    """The viscous Burgers equation on ``points`` periodic grid points.

    The time step is ``cfl`` times the stability limit min(dx^2 / (2 nu), dx / max|u0|). The state is
    u (an array), the parameters {"nu": viscosity}, the loss 0.5 * dx * sum(u_n^2) (energy at the end).

    Returns:
        (step, u0, params, loss); ``step.dt`` holds the time step.
    """
    dx = length / points
    xs = np.arange(points) * dx
    u0 = np.sin(xs) + 0.5 * np.sin(3 * xs + 1.0)
    dt = cfl * min(dx * dx / (2 * nu), dx / np.max(np.abs(u0)))
    inv2dx, invdx2 = 1.0 / (2 * dx), 1.0 / (dx * dx)

    def rhs(u, nu_):
        up, um = ad.roll(u, -1), ad.roll(u, 1)
        return -u * (up - um) * inv2dx + nu_ * (up - 2.0 * u + um) * invdx2

    def step(u, p, i):
        k1 = rhs(u, p["nu"])
        k2 = rhs(u + dt * k1, p["nu"])
        return u + (0.5 * dt) * (k1 + k2)

    def loss(u):
        return 0.5 * dx * ad.sum(u * u)

    step.dt = dt
    return step, u0, {"nu": np.array(nu)}, loss


def lorenz(*, dt: float = 0.01, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
    """The Lorenz system with RK4 steps of ``dt``; loss = z at the end; parameters sigma, rho, beta."""

    def f(s, p):
        x, y, z = s[0], s[1], s[2]
        return ad.stack([p["sigma"] * (y - x), x * (p["rho"] - z) - y, x * y - p["beta"] * z])

    def step(s, p, i):
        k1 = f(s, p)
        k2 = f(s + (0.5 * dt) * k1, p)
        k3 = f(s + (0.5 * dt) * k2, p)
        k4 = f(s + dt * k3, p)
        return s + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    def loss(s):
        return s[2] * 1.0

    params = {"sigma": np.array(sigma), "rho": np.array(rho), "beta": np.array(beta)}
    return step, np.array([1.0, 1.0, 1.0]), params, loss
