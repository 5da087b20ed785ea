"""Autograd graph helpers shared by profiling and the runner: graph boundaries, zero stand-ins, gradients that release what they start from, the in-place check."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


_IN_PLACE = (
    "revolve.integrations.torch: layer {i} ({layer}) modifies its input in place, which checkpointing cannot "
    "allow (a stored input would change); use the out-of-place form, e.g. nn.ReLU() instead of nn.ReLU(inplace=True)"
)


@contextlib.contextmanager
def _hooks_suspended(tensors):
    """Take the gradient hooks (``Tensor.register_hook``) off these leaves for an internal gradient call.

    Autograd runs a leaf's hooks whenever it computes the leaf's gradient, ``autograd.grad`` included, and
    uses what they return. The adapter's reverses and profiling compute parameter gradients that the
    engine then receives again as the Function's output: with the hooks left on, a hook would run on each
    layer's part and once more on the total (``g * 2`` applied twice). Suspended, they run once, on the
    total, as in plain autograd.
    """
    hooked = [(t, t._backward_hooks) for t in tensors if isinstance(t, torch.Tensor) and t._backward_hooks]
    for t, _ in hooked:
        t._backward_hooks = None
    try:
        yield
    finally:
        for t, hooks in hooked:
            t._backward_hooks = hooks


@contextlib.contextmanager
def _no_in_place(i: int, layer: nn.Module):
    """Turn autograd's in-place error on a recorded layer into one that names the layer and the fix."""
    try:
        yield
    except RuntimeError as e:
        if "in-place operation" in str(e) or "inplace" in str(e):
            raise RuntimeError(_IN_PLACE.format(i=i, layer=layer)) from e
        raise


class _Boundary(torch.autograd.Function):
    """Identity that starts a fresh graph: a view of x (no copy) that requires grad through a scalar anchor."""

    @staticmethod
    def forward(ctx, anchor, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return None, None  # never run: gradients are captured at this node's edge


_ZEROS: dict = {}


def _zero(like: torch.Tensor, anchor: bool = False) -> torch.Tensor:
    """A scalar zero of ``like``'s dtype and device, made once per process (a training step then creates none).

    ``anchor``: one that requires grad, the anchor of ``_graph_input`` (no gradient ever reaches it); else
    the one element that gradients' stand-ins broadcast (never written: a broadcast tensor refuses writes).
    """
    key = (like.dtype, like.device, anchor)
    if key not in _ZEROS:
        _ZEROS[key] = torch.zeros((), dtype=like.dtype, device=like.device, requires_grad=anchor)
    return _ZEROS[key]


def _stand_in(grad: torch.Tensor) -> torch.Tensor:
    """Zeros shaped like ``grad`` that take no memory: the one-element ``_zero``, broadcast."""
    return _zero(grad).expand(grad.shape)


def _grad_releasing(out_edge, wrt: list, adjoint: list) -> list:
    """``autograd.grad`` from ``out_edge`` with the gradient ``adjoint[0]``, which lives no longer than in plain autograd.

    The engine keeps a call's ``grad_outputs`` until the call returns, so a reverse of several nodes would
    hold the gradient it starts from to the end. The call gets a stand-in instead (zeros of the same shape,
    broadcast from one element: no memory); a pre-hook on the edge's node swaps the real gradient in, taking
    it out of ``adjoint`` (the caller keeps no other reference), and the engine frees it as soon as that
    node has run, as it does in plain autograd.
    """
    index = out_edge.output_nr

    def swap(grad_outputs):
        grad_outputs = list(grad_outputs)
        grad_outputs[index] = adjoint.pop()
        return tuple(grad_outputs)

    stand_in = _stand_in(adjoint[0])
    handle = out_edge.node.register_prehook(swap)
    try:
        return list(torch.autograd.grad([out_edge], wrt, [stand_in], allow_unused=True))
    finally:
        handle.remove()


def _graph_input(x: torch.Tensor) -> torch.Tensor:
    """x as the differentiable input of a recording that starts a segment, holding nothing itself.

    A leaf would be kept alive by its gradient accumulator and ``x + 0`` would copy x; this view shares x's
    storage (bitwise x), and its gradient edge, the boundary node, saves nothing. The node hangs off a
    scalar anchor that requires grad (one per process, see ``_zero``); no gradient ever reaches it.
    """
    with torch.enable_grad():
        return _Boundary.apply(_zero(x, anchor=True), x.detach())
