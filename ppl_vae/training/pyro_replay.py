"""A Pyro ELBO step recorded once as a graph of torch operations, then replayed every step.

At every SVI step Pyro runs the model and the guide through its effect handlers (messages for
each ``pyro.param`` and ``pyro.sample``, plates, distribution objects, traces): on the standard
VAE about a sixth of a training step on one CPU thread, with nothing to compute in it. For the
reparameterized single-sample ELBO of programs whose structure does not depend on the data,
every step runs the same torch operations on new values. :func:`record_elbo` runs the programs
once under ``torch.fx.experimental.proxy_tensor.make_fx``, which records the operations
(ATen calls) with the parameters, the minibatch, its indices and labels as the graph's inputs;
:class:`RecordedELBO` then calls that graph instead of the programs. Autograd differentiates the
replayed operations as it would the programs'; a draw is an operation of the graph
(``normal_`` on a fresh tensor), so each replay draws new noise from torch's generator, in the
programs' order: a replayed step consumes the generator exactly as a Pyro step does. A tensor
the programs read that is neither a parameter nor an input is recorded as a constant: right for
fixed tensors, the only ones the zoo's programs read (a flow's autoregressive masks).

The objective is ``Trace_ELBO``'s for a guide whose sites are all reparameterized, from the
traces Pyro's own ``get_importance_trace`` builds (subsample sites pruned, plate scales and masks
applied): −[Σ_model log p − Σ_guide log q], each site's ``log_prob_sum``. The recording is refused
(:func:`record_elbo` returns the reason, and the caller keeps running the programs) when the
programs read a parameter that is not one of the VAE's, have a guide site without ``rsample``
(its score term is not in this objective), or cannot be recorded (a branch on a tensor's value).
"""

from __future__ import annotations

from typing import Any

import pyro
import torch
import torch.fx.experimental.proxy_tensor
from pyro import poutine
from pyro.infer.enum import get_importance_trace


class RecordedELBO:
    """The negative ELBO of one minibatch as a recorded graph: ``elbo(x, idx, c)`` returns the
    loss tensor (scaled to the data set by the plate), differentiable in :attr:`params`."""

    def __init__(self, graph: torch.fx.GraphModule, params: list[torch.Tensor],
                 shapes: tuple) -> None:
        self.graph, self.params, self.shapes = graph, params, shapes

    def fits(self, x: torch.Tensor, idx: torch.Tensor, c: torch.Tensor | None) -> bool:
        """Whether these inputs have the shapes the graph was recorded with."""
        return _shapes(x, idx, c) == self.shapes

    def __call__(self, x: torch.Tensor, idx: torch.Tensor,
                 c: torch.Tensor | None) -> torch.Tensor:
        return self.graph(self.params, x, idx, c)


def record_elbo(vae: Any, guide: Any, num_data: int, x: torch.Tensor, idx: torch.Tensor,
                c: torch.Tensor | None) -> RecordedELBO | str:
    """Record the negative single-sample ELBO of ``vae``'s model and ``guide`` (the VAE's, or
    the one an estimator wrapped it in) on a minibatch of these shapes; the
    :class:`RecordedELBO`, or why it cannot be recorded (a sentence).

    The recording runs the programs once for real, inside a forked generator, so the caller's
    random stream is as if nothing had run."""
    names = list(vae.get_params())
    own = vae.parameters()
    seen: dict[str, Any] = {}

    def negative_elbo(params: list[torch.Tensor], x: torch.Tensor, idx: torch.Tensor,
                      c: torch.Tensor | None) -> torch.Tensor:
        with poutine.trace(param_only=True) as used, \
                poutine.substitute(data=dict(zip(names, params, strict=True))):
            model_trace, guide_trace = get_importance_trace(
                "flat", 1, vae.model, guide, (x, idx, num_data), {"c": c})
        seen["params"] = set(used.trace.nodes)
        seen["guide"] = guide_trace
        elbo = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo + site["log_prob_sum"]
        for site in guide_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo - site["log_prob_sum"]
        return -elbo

    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), pyro.validation_enabled(False):
            graph = torch.fx.experimental.proxy_tensor.make_fx(negative_elbo)(
                [p.detach() for p in own], x, idx, c)
    except Exception as error:  # noqa: BLE001 - any failure means: run the programs instead
        return f"the programs could not be recorded ({type(error).__name__}: {error})"
    foreign = sorted(seen["params"] - set(names))
    if foreign:
        return f"the programs read parameters that are not the VAE's: {', '.join(foreign)}"
    score = [name for name, site in seen["guide"].nodes.items()
             if site["type"] == "sample" and not site["is_observed"]
             and not getattr(site["fn"], "has_rsample", False)]
    if score:
        return f"guide sites without rsample need a score term: {', '.join(score)}"
    graph.graph.eliminate_dead_code()
    graph.recompile()
    for name in names:  # in Pyro's param store, as a run of the programs leaves them
        vae.param(name)
    return RecordedELBO(graph, own, _shapes(x, idx, c))


def _shapes(x: torch.Tensor, idx: torch.Tensor, c: torch.Tensor | None) -> tuple:
    return (tuple(x.shape), x.dtype, tuple(idx.shape),
            None if c is None else (tuple(c.shape), c.dtype))
