"""revolve.ad: a small reverse- and forward-mode automatic differentiation engine on numpy arrays.

Write functions with ``revolve.ad``'s numpy-like functions (``ad.exp``, ``ad.sum``, ``ad.roll``, ...) and
operators (``+``, ``*``, ``@``, ``**``, indexing); transform them with ``grad``, ``value_and_grad``,
``vjp``, ``jvp``, ``jacrev``, ``jacfwd`` and ``hvp``. Called on plain numpy arrays, the same functions run
as plain numpy with nothing recorded: that is how the executor advances without taping.

Example:
    >>> import numpy as np
    >>> from revolve import ad
    >>> f = lambda x: ad.sum(ad.tanh(x) ** 2)
    >>> ad.grad(f)(np.array([0.5, -1.0])).round(4)
    array([ 0.7269, -0.6397])
"""

from . import rules as _rules
from .core import Primitive, Tracer
from .ops import *  # noqa: F401,F403 - the numpy-like functions
from .ops import __all__ as _ops_all
from .custom import custom_jvp, custom_vjp
from .rules import RULES
from .transforms import (
    GradCost, GradientCheckError, OpCount, VJPFunction, check_grads, cost, grad, grad_cost, hvp,
    hessian, jacfwd, jacrev, jvp, register_pytree, tree_flatten, tree_unflatten,
    value_and_grad, vjp,
)
from .sparse import SparseJacobian, SparsityPattern, color_columns, jacobian_sparsity, sparse_jacobian

_rules.install()

__all__ = [
    *_ops_all, "grad", "value_and_grad", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "hvp", "cost", "grad_cost", "OpCount",
    "GradCost", "check_grads", "GradientCheckError", "sparse_jacobian", "color_columns", "jacobian_sparsity",
    "SparsityPattern", "SparseJacobian",
    "tree_flatten", "tree_unflatten", "register_pytree", "custom_vjp", "custom_jvp", "Tracer", "Primitive", "RULES", "VJPFunction",
]
