"""The exceptions revolve raises."""

from __future__ import annotations

__all__ = ["ScheduleError", "InfeasibleBudget", "RevolveInternalError"]


class ScheduleError(ValueError):
    """A schedule breaks a rule of NOTE [ Schedule invariants ] (see ``revolve.actions``).

    Attributes:
        index: position of the first bad action in the schedule (the number of actions for a rule that
            is broken at the end, such as a step never reversed).
        action: the bad action, or None when the schedule ended too early.
        rule: the rule it breaks, in words.
    """

    def __init__(self, index: int, action, rule: str, *, where: str = "revolve.simulate"):
        self.index = index
        self.action = action
        self.rule = rule
        what = f"action #{index} {action!r}" if action is not None else f"the end of the schedule (after {index} actions)"
        super().__init__(f"{where}: {what} is invalid: {rule}")


class InfeasibleBudget(ValueError):
    """No schedule fits the memory budget; ``minimum`` is the smallest budget (bytes) with which one exists."""

    def __init__(self, message: str, *, budget: float, minimum: float):
        self.budget = budget
        self.minimum = minimum
        super().__init__(message)


class RevolveInternalError(RuntimeError):
    """An internal invariant failed: this is a bug in revolve, please report it with the inputs."""

    def __init__(self, message: str):
        super().__init__(f"internal error (a bug in revolve, please report it): {message}")
