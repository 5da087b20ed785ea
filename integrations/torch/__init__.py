"""PyTorch adapter: run an ``nn.Sequential`` under a memory budget in bytes, with exact gradients.

    from revolve.integrations.torch import CheckpointedSequential
    model = CheckpointedSequential(nn.Sequential(...), memory="512MiB")   # the one line that changes
    loss = criterion(model(x), y); loss.backward()

The model is profiled per layer (times, the size of each activation, the bytes autograd saves), a
schedule is planned within the budget (the heterogeneous DP by default) and executed with autograd:

- recomputation runs under ``enable_grad`` on detached inputs, inside ``fork_rng`` with the RNG state the
  layer saw the first time, so dropout draws the same masks and the RNG stream after the step is the
  plain model's;
- a layer's buffers (BatchNorm running statistics) are saved before and restored after every
  recomputation, so they are updated exactly once per training step (unlike torch.utils.checkpoint,
  pytorch issue #96136);
- parameters are inputs of the autograd Function, so their gradients flow even when the input does not
  require grad, work with ``torch.autograd.grad``, and accumulate over layers that share them; so are
  leaves a layer reaches outside its ``parameters()`` (closures, found at profile time) and side inputs
  that require grad (``layer(x, *side)``, ``run_blocks``);
- recomputation re-enters the forward's autocast state; ``create_graph=True`` differentiates a full
  recomputation (exact, store-all memory in that backward); a retained graph's next backward runs the
  schedule again.

What the budget covers (``working_memory=True``, the default): the training step's whole memory, i.e.
every storage the forward, the loss and the backward create: the stored layer inputs, what autograd saves
for the layers whose tapes are live (a saved input or output is the activation itself and counts once),
the activation being computed, layer temporaries, the gradients of activations, the parameters'
gradients, and the output, which the caller holds through the backward, and the RNG states the adapter keeps. Layers are
measured with the allocator (``allocator_peak``'s meter: CUDA's statistics, torch.profiler's memory events
on the CPU), so kernel workspace counts. What the rest of the step holds beside the model (a head, a
loss) goes in ``outside=``. With ``working_memory=False``: only the stored inputs and live tapes.
Consecutive recorded layers form one autograd graph, as in the plain model, and a recording that starts
a segment takes its input as a view of x through an identity autograd node rather than as a leaf, so
nothing else is held. Gradients live no longer than in plain autograd: the output's gradient is taken
from the engine (which would keep it for the whole backward of the one Function) and freed at the first
reverse, and a reverse of several layers does not hold the gradient it starts from. Never covered:
parameters, optimizer state, the input you pass (it is yours, alive anyway: keeping it costs the plan
nothing), and what the loss computes beyond the output's gradient.

Only this package imports torch. Its files: ``profiling`` (layers into a Chain), ``planning`` (a schedule
under a budget), ``runner`` (the schedule executed with autograd), ``sequential`` (the module and
functional fronts), ``_meters`` (saved-storage, storage-peak and allocator meters, timer), ``_state`` (autocast and RNG state a
recomputation re-enters), ``_graph`` (autograd graph helpers shared by profiling and the runner).
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('revolve.integrations.torch needs PyTorch, which is not installed: '
                      'pip install "revolve[torch]" (pins the CPU build, torch==2.13.0)') from e

from ._meters import PeakStorages, allocator_peak
from .planning import plan
from .profiling import profile
from .runner import RunStats
from .sequential import CheckpointedSequential, checkpoint_sequential, run_blocks
from .loop import HostStorage, TorchEngine, checkpointed_loop, gradient

__all__ = ["profile", "CheckpointedSequential", "checkpoint_sequential", "run_blocks", "plan", "RunStats",
           "PeakStorages", "allocator_peak", "gradient", "checkpointed_loop", "TorchEngine", "HostStorage"]
