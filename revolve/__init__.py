"""revolve: memory-optimal checkpointing schedules for reverse-mode automatic differentiation, and their execution.

The planner half (chain model, actions, schedules, planners, simulator) needs only the standard library
and numpy. ``revolve.ad`` is the native reverse-mode engine; ``revolve.gradient`` runs a schedule through
it. Framework adapters live in ``revolve.integrations`` and are never imported by ``import revolve``.
"""

from .actions import Action, Advance, Discard, Record, Restore, Reverse, Snapshot, action_from_json
from .baselines import periodic, store_all
from .binomial import beta, binomial, binomial_cost, min_snapshots, repetition_number
from .chain import Chain
from .optimal import Frontier, FrontierPoint, frontier, min_memory, optimal
from .multilevel import multilevel, multilevel_cost
from ._malloc import tune_allocator
from .executor import ExecutionStats, GradientResult, gradient
from .errors import InfeasibleBudget, RevolveInternalError, ScheduleError
from .schedule import Schedule
from .online import OnlinePlanner, online, online_cost
from .simulator import SimulationStats, simulate
from .units import format_bytes, parse_bytes

__version__ = "0.1.0"

__all__ = [
    "Action", "Advance", "Snapshot", "Restore", "Discard", "Record", "Reverse", "action_from_json",
    "Schedule", "Chain", "simulate", "SimulationStats",
    "online", "OnlinePlanner", "online_cost",
    "binomial", "binomial_cost", "repetition_number", "min_snapshots", "beta",
    "store_all", "periodic", "optimal", "frontier", "min_memory", "Frontier", "FrontierPoint",
    "multilevel", "multilevel_cost",
    "ScheduleError", "InfeasibleBudget", "RevolveInternalError",
    "parse_bytes", "format_bytes", "gradient", "GradientResult", "ExecutionStats", "tune_allocator",
]
