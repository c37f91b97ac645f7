"""MLP networks as flat parameter dicts, shared by both backends: the VAEs' encoders and
decoders, and the neural baseline of the score-function estimator.

Parameters are named ``{prefix}.{layer}.weight`` (shape ``(out, in)``, as in
``torch.nn.Linear``) and ``{prefix}.{layer}.bias``. Initial values come from NumPy with
``torch.nn.Linear``'s default rule, U(−1/√fan_in, 1/√fan_in) for weights and biases, so the
two backends start from bit-identical weights for the same seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ppl_vae.spec import NetworkSpec


def layer_sizes(in_size: int, net: NetworkSpec, out_size: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each linear layer."""
    dims = [in_size, *net.hidden, out_size]
    return list(zip(dims[:-1], dims[1:], strict=True))


def init_mlp(prefix: str, in_size: int, net: NetworkSpec, out_size: int,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Initial weights of an MLP, ``torch.nn.Linear``'s rule."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(layer_sizes(in_size, net, out_size)):
        bound = 1.0 / np.sqrt(fan_in)
        params[f"{prefix}.{i}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in))
        params[f"{prefix}.{i}.bias"] = rng.uniform(-bound, bound, fan_out)
    return params


def apply_mlp(ops: Any, param: Any, prefix: str, net: NetworkSpec, x: Any) -> Any:
    """Run the MLP on ``x`` (any leading batch dims); ``param(name)`` returns a weight."""
    activation = ops.activations[net.activation]
    num_layers = len(net.hidden) + 1
    for i in range(num_layers):
        x = ops.linear(x, param(f"{prefix}.{i}.weight"), param(f"{prefix}.{i}.bias"))
        if i < num_layers - 1:
            x = activation(x)
    return x


def _baseline_net(hidden: int) -> NetworkSpec:
    return NetworkSpec(hidden=(hidden,), activation="relu")


def init_baseline(prefix: str, fan_in: int, hidden: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A one-hidden-layer baseline network b(x) (Mnih & Gregor 2014): ``torch.nn.Linear``'s
    rule for the hidden layer, zeros for the output layer, so it starts at b = 0 (on top of
    the decaying average). ``seed`` fixes the hidden layer, equal on both backends."""
    params = init_mlp(prefix, fan_in, _baseline_net(hidden), 1, np.random.default_rng(seed))
    params[f"{prefix}.1.weight"][:] = 0.0
    params[f"{prefix}.1.bias"][:] = 0.0
    return params


def apply_baseline(ops: Any, param: Any, prefix: str, hidden: int, features: Any) -> Any:
    """b(x) for each row of ``features`` ``(B, D)``: shape ``(B,)``."""
    return apply_mlp(ops, param, prefix, _baseline_net(hidden), features)[..., 0]
