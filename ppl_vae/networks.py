"""Networks as flat parameter dicts, shared by both backends: the VAEs' encoders and decoders
(MLPs, conv / transposed-conv nets, the masked convolutions of a local autoregressive
decoder), and the neural baseline of the score-function estimator.

Parameters are named ``{prefix}.{layer}.weight`` (shape ``(out, in)``, as in
``torch.nn.Linear``) and ``{prefix}.{layer}.bias``. Initial values come from NumPy with
``torch.nn.Linear``'s default rule, U(−1/√fan_in, 1/√fan_in) for weights and biases, so the
two backends start from bit-identical weights for the same seed.

A conditional VAE's networks take ``extra_inputs`` more inputs: one_hot(c) concatenated to
x (after the convolutions, before the MLP head, for a conv encoder) and to z (Sohn et al.
2015), which only widens the first linear layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ACTIVATIONS = ("relu", "tanh", "softplus", "elu")
NETWORK_KINDS = ("mlp", "conv")


def is_count(value: Any) -> bool:
    """An integer >= 1 (TOML's ``true`` is a bool, not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class NetworkSpec:
    """An MLP: ``hidden`` sizes between input and output (``()`` is a linear map).

    ``kind = "conv"``: an encoder of ``len(channels)`` convolutions (``kernel``, ``stride``,
    padding ``(kernel − 1) // 2``) followed by the ``hidden`` MLP head; a decoder of the
    ``hidden`` MLP from z to the smallest feature map (``channels[0]`` channels) followed by
    transposed convolutions through ``channels[1:]`` to the image. ``masked_layers > 0``
    (decoders only) makes the decoder locally autoregressive: that many PixelCNN masked
    convolutions of ``masked_kernel`` and ``masked_channels`` (see
    :func:`local_autoregressive`).

    Attributes
    ----------
    hidden : the MLP's hidden layer sizes (a conv net's MLP head); ``()`` is a linear map.
    activation : the nonlinearity between layers, one of :data:`ACTIVATIONS`.
    kind : ``"mlp"`` or ``"conv"`` (:data:`NETWORK_KINDS`).
    channels : a conv net's channels per convolution (conv only).
    kernel : the convolutions' kernel size (conv only).
    stride : the convolutions' stride (conv only).
    masked_layers : masked convolutions of a local autoregressive decoder (0: none).
    masked_kernel : their kernel size, odd.
    masked_channels : their channels.
    """

    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"
    kind: str = "mlp"
    channels: tuple[int, ...] = ()
    kernel: int = 4
    stride: int = 2
    masked_layers: int = 0
    masked_kernel: int = 3
    masked_channels: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "channels", tuple(self.channels))
        if not all(is_count(h) for h in self.hidden):
            raise ValueError(f"hidden must be a list of positive integers, got {list(self.hidden)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; "
                             f"got {self.activation!r}")
        if self.kind not in NETWORK_KINDS:
            raise ValueError(f"kind must be one of {', '.join(NETWORK_KINDS)}; got {self.kind!r}")
        if not all(isinstance(c, int) and c >= 1 for c in self.channels):
            raise ValueError(f"channels must be a list of positive integers, got "
                             f"{list(self.channels)}")
        if (self.kind == "conv") != bool(self.channels):
            raise ValueError("kind = 'conv' needs channels = [...] (one entry per convolution); "
                             "an MLP takes no channels")
        for name in ("kernel", "stride", "masked_kernel", "masked_channels"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.masked_layers, int) and self.masked_layers >= 0):
            raise ValueError(f"masked_layers must be an integer >= 0, got {self.masked_layers!r}")
        if self.masked_kernel % 2 == 0:
            raise ValueError(f"masked_kernel must be odd (the mask is centred on the pixel), "
                             f"got {self.masked_kernel}")

    def to_dict(self) -> dict[str, Any]:
        """The TOML table: the MLP fields, plus the conv and masked fields when used."""
        out: dict[str, Any] = {"hidden": list(self.hidden), "activation": self.activation}
        if self.kind == "conv":
            out |= {"kind": self.kind, "channels": list(self.channels), "kernel": self.kernel,
                    "stride": self.stride}
        if self.masked_layers:
            out |= {"masked_layers": self.masked_layers, "masked_kernel": self.masked_kernel,
                    "masked_channels": self.masked_channels}
        return out





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


# --------------------------------------------------------------------------- conv nets
#
# Images are NCHW; weights are OIHW (``torch.nn.Conv2d``) for convolutions and
# ``(in, out, kh, kw)`` (``torch.nn.ConvTranspose2d``) for transposed ones, on both backends,
# with torch's default initial values U(−1/√fan_in, 1/√fan_in), fan_in = weight.shape[1]·kh·kw.
# Names: ``encoder.conv.{i}.*`` then the MLP head ``encoder.{j}.*``; ``decoder.{j}.*`` (the
# MLP from z to the smallest feature map) then ``decoder.deconv.{i}.*``.


def image_geometry(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of an image ``data_shape``: ``(H, W)`` or ``(C, H, W)``."""
    if len(data_shape) == 2:
        return (1, *data_shape)
    if len(data_shape) == 3:
        return tuple(data_shape)
    raise ValueError(f"conv networks need data_shape = [H, W] or [C, H, W], got "
                     f"{list(data_shape)}")


def conv_padding(net: NetworkSpec) -> int:
    """``(kernel − 1) // 2``: stride 2 halves an even size (28 → 14 → 7, 32 → 16 → 8)."""
    return (net.kernel - 1) // 2


def conv_sizes(size: int, net: NetworkSpec) -> list[int]:
    """Spatial size before and after each of the ``len(channels)`` strided convolutions."""
    sizes = [size]
    for _ in net.channels:
        sizes.append((sizes[-1] + 2 * conv_padding(net) - net.kernel) // net.stride + 1)
    if sizes[-1] < 1:
        raise ValueError(f"{len(net.channels)} convolutions of kernel {net.kernel} and stride "
                         f"{net.stride} shrink size {size} below 1 pixel; use fewer channels")
    return sizes


def output_paddings(size: int, net: NetworkSpec) -> list[int]:
    """``output_padding`` of each transposed convolution of a decoder that grows the smallest
    feature map back to ``size`` through the sizes :func:`conv_sizes` gives: the remainder
    the convolution's floor dropped, so always in ``[0, stride)``."""
    sizes = conv_sizes(size, net)[::-1]
    return [large - ((small - 1) * net.stride - 2 * conv_padding(net) + net.kernel)
            for small, large in zip(sizes[:-1], sizes[1:], strict=True)]


def _uniform(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape)


def _init_conv(params: dict, name: str, shape: tuple[int, ...], bias_size: int,
               rng: np.random.Generator) -> None:
    fan_in = shape[1] * shape[2] * shape[3]
    params[f"{name}.weight"] = _uniform(shape, fan_in, rng)
    params[f"{name}.bias"] = _uniform((bias_size,), fan_in, rng)


def _head_net(net: NetworkSpec) -> NetworkSpec:
    return NetworkSpec(hidden=net.hidden, activation=net.activation)


def _flatten_batch(x: Any, event_shape: tuple[int, ...]) -> tuple[Any, tuple[int, ...]]:
    batch = tuple(x.shape[:-1])
    return x.reshape((-1, *event_shape)), batch


def _append(ops: Any, h: Any, y: Any) -> Any:
    """``[h, y]`` along the last axis, ``y`` broadcast over ``h``'s leading (particle) dims;
    ``h`` itself when ``y`` is None."""
    if y is None:
        return h
    return ops.concat([h, ops.broadcast_to(y, (*h.shape[:-1], y.shape[-1]))])


def init_encoder(net: NetworkSpec, data_shape: tuple[int, ...], out_size: int,
                 rng: np.random.Generator, extra_inputs: int = 0) -> dict[str, np.ndarray]:
    """Initial weights of the encoder: an MLP, or convolutions and an MLP head (whose input
    is ``extra_inputs`` wider for a conditional VAE)."""
    if net.kind == "mlp":
        return init_mlp("encoder", math.prod(data_shape) + extra_inputs, net, out_size, rng)
    channels, height, width = image_geometry(data_shape)
    params: dict[str, np.ndarray] = {}
    for i, ch in enumerate(net.channels):
        _init_conv(params, f"encoder.conv.{i}", (ch, channels, net.kernel, net.kernel), ch, rng)
        channels = ch
    flat = channels * conv_sizes(height, net)[-1] * conv_sizes(width, net)[-1]
    return params | init_mlp("encoder", flat + extra_inputs, _head_net(net), out_size, rng)


def apply_encoder(ops: Any, param: Any, net: NetworkSpec, data_shape: tuple[int, ...],
                  x: Any, y: Any = None) -> Any:
    """h(x) for ``x`` of shape ``(..., D)``; h(x, y) with the condition ``y`` ``(..., C)``."""
    if net.kind == "mlp":
        return apply_mlp(ops, param, "encoder", net, _append(ops, x, y))
    activation = ops.activations[net.activation]
    h, batch = _flatten_batch(x, image_geometry(data_shape))
    for i in range(len(net.channels)):
        h = activation(ops.conv2d(h, param(f"encoder.conv.{i}.weight"),
                                  param(f"encoder.conv.{i}.bias"), net.stride,
                                  conv_padding(net)))
    return apply_mlp(ops, param, "encoder", _head_net(net),
                     _append(ops, h.reshape((*batch, -1)), y))


def init_decoder(net: NetworkSpec, latent_dim: int, data_shape: tuple[int, ...],
                 outputs_per_value: int, rng: np.random.Generator,
                 extra_inputs: int = 0) -> dict[str, np.ndarray]:
    """Initial weights of the decoder (``outputs_per_value`` outputs per data value; input
    ``latent_dim + extra_inputs``), plus the masked convolutions of a local autoregressive
    decoder."""
    size = math.prod(data_shape) * outputs_per_value
    in_size = latent_dim + extra_inputs
    if net.kind == "mlp":
        params = init_mlp("decoder", in_size, net, size, rng)
    else:
        channels, height, width = image_geometry(data_shape)
        start = net.channels[0] * conv_sizes(height, net)[-1] * conv_sizes(width, net)[-1]
        params = init_mlp("decoder", in_size, _head_net(net), start, rng)
        widths = [*net.channels, channels * outputs_per_value]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            _init_conv(params, f"decoder.deconv.{i}", (c_in, c_out, net.kernel, net.kernel),
                       c_out, rng)
    if net.masked_layers:
        params |= init_masked(net, outputs_per_value, rng)
    return params


def apply_decoder(ops: Any, param: Any, net: NetworkSpec, data_shape: tuple[int, ...],
                  outputs_per_value: int, z: Any, y: Any = None) -> Any:
    """f(z) for ``z`` of shape ``(..., d)``: ``(..., D · P)``, value-major (D then P);
    f(z, y) with the condition ``y`` ``(..., C)``."""
    z = _append(ops, z, y)
    if net.kind == "mlp":
        return apply_mlp(ops, param, "decoder", net, z)
    activation = ops.activations[net.activation]
    channels, height, width = image_geometry(data_shape)
    hs, ws = conv_sizes(height, net)[::-1], conv_sizes(width, net)[::-1]
    h, batch = _flatten_batch(activation(apply_mlp(ops, param, "decoder", _head_net(net), z)),
                              (net.channels[0], hs[0], ws[0]))
    pads = list(zip(output_paddings(height, net), output_paddings(width, net), strict=True))
    for i, (pad_h, pad_w) in enumerate(pads):
        if pad_h != pad_w:
            raise ValueError(f"non-square image {height}x{width} needs unequal output "
                             "paddings; use square images")
        h = ops.conv_transpose2d(h, param(f"decoder.deconv.{i}.weight"),
                                 param(f"decoder.deconv.{i}.bias"), net.stride,
                                 conv_padding(net), pad_h)
        if i < len(pads) - 1:
            h = activation(h)
    h = h.reshape((-1, channels, outputs_per_value, height, width))
    return ops.moveaxis(h, 2, -1).reshape((*batch, -1))


# --------------------------------------------------------------------------- masked convs


def causal_mask(ops: Any, weight: Any, include_center: bool) -> Any:
    """Zero the kernel at and after the centre in raster order (PixelCNN mask A), or only
    after it (mask B), van den Oord et al. (2016)."""
    k = weight.shape[-1]
    position = ops.arange(weight, k * k).reshape((k, k))
    centre = (k * k) // 2
    keep = position <= centre if include_center else position < centre
    return ops.where(keep, weight, 0.0)


def init_masked(net: NetworkSpec, outputs_per_value: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights of the local autoregressive network: ``masked_layers`` k×k masked convs of
    ``masked_channels`` (the first of mask A on the one-channel image), a 1×1 conv from the
    decoder's output to the first layer, and a 1×1 output conv."""
    params: dict[str, np.ndarray] = {}
    width, k, p = net.masked_channels, net.masked_kernel, outputs_per_value
    for i in range(net.masked_layers):
        _init_conv(params, f"decoder.masked.{i}", (width, 1 if i == 0 else width, k, k), width,
                   rng)
    _init_conv(params, "decoder.cond", (width, p, 1, 1), width, rng)
    _init_conv(params, "decoder.out", (p, width, 1, 1), p, rng)
    return params


def masked_param_names(net: NetworkSpec) -> list[str]:
    """Names of the local autoregressive network's parameters (see :func:`init_masked`)."""
    layers = [f"decoder.masked.{i}" for i in range(net.masked_layers)]
    return [f"{layer}.{kind}" for layer in (*layers, "decoder.cond", "decoder.out")
            for kind in ("weight", "bias")]


def masked_outputs(ops: Any, param: Any, net: NetworkSpec, data_shape: tuple[int, ...],
                   cond: Any, x: Any) -> Any:
    r"""Outputs of p(x_i | z, x_{<i}) for every pixel in one pass: ``cond`` (the decoder's
    ``(..., D · P)``) plus masked convolutions of ``x`` broadcast to ``cond``'s batch.

    .. math:: h_1 = a(W_A * x + V f(z)),\ h_{l+1} = a(W_B * h_l),\ o = U h_L + f(z)

    Output i sees x only through the masked kernels: pixels before i in raster order within
    a window of ``masked_layers · (masked_kernel − 1) / 2`` rows and columns.
    """
    _, height, width = image_geometry(data_shape)
    activation = ops.activations[net.activation]
    outputs = cond.shape[-1] // (height * width)
    c, batch = _flatten_batch(cond, (height, width, outputs))
    c = ops.moveaxis(c, -1, 1)
    h = ops.broadcast_to(x, tuple(cond.shape[:-1]) + tuple(x.shape[-1:]))
    h = h.reshape((-1, 1, height, width))
    pad = net.masked_kernel // 2
    for i in range(net.masked_layers):
        weight = causal_mask(ops, param(f"decoder.masked.{i}.weight"), include_center=i > 0)
        h = ops.conv2d(h, weight, param(f"decoder.masked.{i}.bias"), 1, pad)
        if i == 0:
            h = h + ops.conv2d(c, param("decoder.cond.weight"), param("decoder.cond.bias"), 1, 0)
        h = activation(h)
    out = ops.conv2d(h, param("decoder.out.weight"), param("decoder.out.bias"), 1, 0) + c
    return ops.moveaxis(out, 1, -1).reshape((*batch, -1))


def local_autoregressive(ops: Any, param: Any, net: NetworkSpec, data_shape: tuple[int, ...],
                         pixel: Any, cond: Any) -> Any:
    """p(x | z) = Π_i pixel(x_i | outputs_i(z, x_{<i})) (VLAE's local decoder, Chen et al.
    2017): log p(x | z) in one parallel pass; sampling pixel by pixel in raster order.
    ``pixel(outputs)`` is the factorized likelihood of the outputs (e.g. Bernoulli logits).
    ``param`` is read when this is called (so the PPL registers the parameters at the model's
    ``x`` site), not later when the log-density is evaluated."""
    param = {name: param(name) for name in masked_param_names(net)}.__getitem__
    size = math.prod(data_shape)

    def log_prob(x: Any) -> Any:
        return pixel(masked_outputs(ops, param, net, data_shape, cond, x)).log_prob(x)

    def sample(draw: Any) -> Any:
        canvas = ops.full(cond, (*cond.shape[:-1], size), 0.0)
        position = ops.arange(cond, size)
        for i in range(size):
            value = draw(pixel(masked_outputs(ops, param, net, data_shape, cond, canvas)))
            canvas = ops.where(position == i, ops.cast_like(value, canvas), canvas)
        return canvas

    def mean() -> Any:
        raise ValueError("E[x | z] has no closed form under a local autoregressive decoder; "
                         "draw x pixel by pixel with vae.likelihood(z).sample()")

    return ops.functional_distribution(
        log_prob=log_prob, sample=sample, mean=mean, batch_shape=tuple(cond.shape[:-1]),
        event_shape=(size,), support=pixel(cond).support)
