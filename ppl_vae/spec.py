"""``ModelSpec``: a frozen, validated description of a VAE, loadable from TOML.

A spec file looks like::

    name = "laplace_laplace"
    latent_dim = 20
    data_shape = [784]
    kl = "analytic"                 # or "monte-carlo": an explicit choice, never a fallback

    [posterior]
    family = "laplace"              # gaussian | laplace | masked | none
    [prior]
    family = "learned-laplace"      # standard-normal | standard-laplace | learned-normal | ...
                                    # mixture | vamp (components) |
                                    # flow (layers, hidden, defensive)
    [likelihood]
    family = "bernoulli"            # bernoulli | gaussian | discretized-logistic | categorical
    [encoder]
    hidden = [400]                  # [] means linear
    # kind = "conv"; channels = [32, 64]; kernel = 4; stride = 2   (conv nets)
    [decoder]
    hidden = [400]
    [training]
    estimator = "analytic-kl"
    # [condition]                   a conditional VAE p(x | z, c) p(z | c), q(z | x, c)
    # classes = 10; prior = "learned"   (p(z | c) per class; "fixed": p(z) ignores c)

Every error is a :class:`SpecError` naming the file, the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppl_vae import families, networks
from ppl_vae.families import LIKELIHOODS, POSTERIORS, PRIORS
from ppl_vae.networks import NetworkSpec, is_count

__all__ = ["BINARIZATIONS", "CLASS_PRIOR_FAMILIES", "CONDITION_PRIORS", "KL_CHOICES",
           "LR_SCHEDULES", "SELECTIONS", "VALID_CRITERIA", "ConditionSpec", "ModelSpec",
           "NetworkSpec", "SpecError", "TrainingDefaults", "from_dict", "load", "loads"]

KL_CHOICES = ("analytic", "monte-carlo")
CONDITION_PRIORS = ("fixed", "learned")
CLASS_PRIOR_FAMILIES = ("learned-normal", "learned-laplace")
"""Prior families with per-dimension location and scale, which ``[condition] prior = "learned"``
turns into per-class tables (:func:`ppl_vae.families.class_rows`)."""
BINARIZATIONS = ("static", "threshold", "dynamic", "none")
"""How ``ppl_vae.data.prepare`` turns grey levels into binary data for a Bernoulli likelihood."""
SELECTIONS = ("best-valid", "last")
"""Which parameters a run keeps (:mod:`ppl_vae.training.selection`)."""
LR_SCHEDULES = ("constant", "warmup", "cosine", "exponential", "step", "plateau")
"""Learning-rate schedules (:mod:`ppl_vae.training.schedules`)."""
VALID_CRITERIA = ("objective", "elbo", "iwae")
"""The validation bound that selection, early stopping and reduce-on-plateau read: the training
estimator's own bound (the ELBO; the IWAE bound for iwae, vimco and dreg), the ELBO, or the
IWAE bound, with ``valid_particles`` particles (default: the training ``num_particles``)."""


class SpecError(ValueError):
    """An invalid model spec; the message names the source, the field and the fix."""


def _check_name(name: Any) -> None:
    """A spec's name becomes a folder name (``runs/NAME-BACKEND``, compare cells, variance
    folders): it must be one plain path component."""
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"name must be a non-empty string, got {name!r}; e.g. name = \"my_vae\"")
    bad = [c for c in ("/", "\\", "\0") if c in name]
    if bad or name in (".", "..") or name != name.strip():
        why = (f"contains {' and '.join(map(repr, bad))}" if bad else
               "is a relative folder" if name in (".", "..") else
               "starts or ends with white space")
        raise SpecError(f"name = {name!r} {why}, but the name is used as a folder name "
                        "(runs/NAME-BACKEND): give a plain name without '/', '\\', '..' or "
                        "surrounding spaces, e.g. name = \"my_vae\"")


def _is_positive_number(value: Any) -> bool:
    """A finite real number > 0."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


@dataclass(frozen=True)
class TrainingDefaults:
    """How ``ppl-vae train`` (and ``fit``) trains the model unless told otherwise: the budget,
    validation selection and early stopping (:mod:`ppl_vae.training.selection`), the
    learning-rate schedule (:class:`ppl_vae.training.schedules.LRSchedule`, whose fields the
    ``lr_*`` ones are) and the KL term's weight and floor
    (:class:`ppl_vae.training.schedules.KLWeight`, free bits). Held-out numbers always use the
    unweighted bound.

    Attributes
    ----------
    estimator : the gradient estimator's name (:mod:`ppl_vae.estimators`).
    num_particles : particles per datapoint (K of the importance-weighted bounds).
    num_steps : optimization steps.
    batch_size : datapoints per minibatch.
    learning_rate : Adam's (peak) learning rate.
    dataset : the data set: a built-in name or a path (``ppl-vae train --dataset``).
    binarization : how grey levels become binary data (:data:`BINARIZATIONS`).
    select : which parameters the run keeps, ``"best-valid"`` or ``"last"``.
    patience : stop after that many evaluations without a lower validation loss; left out:
        never.
    valid_criterion : the validation bound (:data:`VALID_CRITERIA`).
    valid_particles : particles of the validation bound; left out: ``num_particles``.
    lr_schedule : the learning-rate schedule (:data:`LR_SCHEDULES`).
    lr_warmup_steps : steps of linear warm-up, lr·(t + 1)/W.
    lr_decay_steps : D, the decay horizon; needed by ``exponential`` and ``step``; ``cosine``
        defaults to ``num_steps − lr_warmup_steps``.
    lr_decay_rate : the factor per period (exponential, step).
    lr_min : the floor of the cosine decay and of reduce-on-plateau.
    lr_plateau_factor : reduce-on-plateau's factor.
    lr_plateau_patience : evaluations without improvement before a plateau reduction.
    lr_plateau_threshold : the relative improvement reduce-on-plateau counts.
    beta : the weight of the KL term (β-VAE; 1 is the ELBO).
    kl_warmup_steps : steps of the linear rise of the KL weight (0: none).
    kl_warmup_start : the KL weight at step 0 of the warm-up.
    free_bits : λ, the floor in nats on each latent dimension's minibatch-mean KL.
    """

    estimator: str = "reparam"
    num_particles: int = 1
    num_steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3
    dataset: str = "mnist5k"
    binarization: str = "static"
    select: str = "best-valid"
    patience: int | None = None
    valid_criterion: str = "objective"
    valid_particles: int | None = None
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    lr_decay_steps: int | None = None
    lr_decay_rate: float = 0.1
    lr_min: float = 0.0
    lr_plateau_factor: float = 0.5
    lr_plateau_patience: int = 5
    lr_plateau_threshold: float = 1e-4
    beta: float = 1.0
    kl_warmup_steps: int = 0
    kl_warmup_start: float = 0.0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        for name in ("num_particles", "num_steps", "batch_size"):
            value = getattr(self, name)
            if not is_count(value):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("patience", "valid_particles", "lr_decay_steps"):
            value = getattr(self, name)
            if value is not None and not is_count(value):
                raise ValueError(f"{name} must be an integer >= 1 (or left out), got {value!r}")
        for name in ("lr_warmup_steps", "lr_plateau_patience", "kl_warmup_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("learning_rate", "lr_decay_rate", "lr_plateau_factor",
                     "lr_plateau_threshold", "beta"):
            if not _is_positive_number(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number > 0, got "
                                 f"{getattr(self, name)!r}")
        for name in ("lr_min", "kl_warmup_start", "free_bits"):
            value = getattr(self, name)
            if not (_is_positive_number(value) or (isinstance(value, int | float)
                                                   and not isinstance(value, bool)
                                                   and value == 0)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, allowed in (("binarization", BINARIZATIONS), ("select", SELECTIONS),
                              ("valid_criterion", VALID_CRITERIA),
                              ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got "
                                 f"{getattr(self, name)!r}")


@dataclass(frozen=True)
class ConditionSpec:
    """A class label c ∈ {0, …, classes − 1} the model is conditioned on (a conditional VAE,
    Sohn et al. 2015): the encoder reads [x, one_hot(c)], the decoder [z, one_hot(c)].

    ``prior = "learned"``: p(z | c) is the ``[prior]`` family with a location and a scale per
    class (a linear map of one_hot(c)); ``"fixed"``: p(z | c) = p(z), the ``[prior]`` as is.

    Attributes
    ----------
    classes : C ≥ 2, the number of labels (labels are 0, …, C − 1).
    prior : ``"learned"`` (a prior location and scale per class) or ``"fixed"`` (p(z) for
        every class).
    """

    classes: int = 0
    prior: str = "fixed"

    def __post_init__(self) -> None:
        if not (is_count(self.classes) and self.classes >= 2):
            raise ValueError(f"classes must be an integer >= 2 (the number of labels, e.g. "
                             f"classes = 10 for digits), got {self.classes!r}")
        if self.prior not in CONDITION_PRIORS:
            raise ValueError(f"prior must be one of {', '.join(CONDITION_PRIORS)}; got "
                             f"{self.prior!r}")

    @property
    def learned_prior(self) -> bool:
        """Whether p(z | c) depends on c."""
        return self.prior == "learned"


@dataclass(frozen=True)
class ModelSpec:
    """A VAE: latent size, families, networks and the KL choice.

    Attributes
    ----------
    name : the model's name (the zoo file's stem; reports and tables show it).
    latent_dim : number of latent dimensions (≥ 1).
    data_shape : shape of one datapoint, e.g. ``(784,)`` or ``(28, 28)``.
    posterior, prior, likelihood : family instances from :mod:`ppl_vae.families`.
    encoder, decoder : MLP specs; an encoder-free posterior (``none``) takes no encoder.
    kl : ``"analytic"`` (closed form; the pair must have one) or ``"monte-carlo"``.
    scale_floor : added after softplus to every scale the networks emit.
    condition : the class label the model is conditioned on, or None (an ordinary VAE).
    description : one line saying what the model is, for reports.
    training : how to train it unless told otherwise (:class:`TrainingDefaults`).
    """

    name: str
    latent_dim: int
    data_shape: tuple[int, ...]
    posterior: Any
    prior: Any
    likelihood: Any
    encoder: NetworkSpec | None = field(default_factory=NetworkSpec)
    decoder: NetworkSpec = field(default_factory=NetworkSpec)
    kl: str = "monte-carlo"
    scale_floor: float = 1e-5
    description: str = ""
    training: TrainingDefaults = field(default_factory=TrainingDefaults)
    condition: ConditionSpec | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_shape", tuple(self.data_shape))
        _check_name(self.name)
        if not is_count(self.latent_dim):
            raise SpecError(f"latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        if not self.data_shape or not all(is_count(d) for d in self.data_shape):
            raise SpecError(f"data_shape must be a list of positive integers, "
                            f"got {list(self.data_shape)}")
        for role, table in (("posterior", POSTERIORS), ("prior", PRIORS),
                            ("likelihood", LIKELIHOODS)):
            if type(getattr(self, role)) not in table.values():
                raise SpecError(f"{role} must be one of the families {', '.join(table)}; "
                                f"got {getattr(self, role)!r}")
        if self.posterior.amortized and self.encoder is None:
            raise SpecError(f"posterior family {self.posterior.name!r} needs an [encoder]")
        if not self.posterior.amortized and self.encoder is not None:
            raise SpecError("posterior family 'none' has no encoder: remove the [encoder] table")
        if self.kl not in KL_CHOICES:
            raise SpecError(f"kl must be one of {', '.join(KL_CHOICES)}; got {self.kl!r}")
        if self.kl == "analytic" and not families.has_closed_form_kl(self.posterior, self.prior):
            pairs = "; ".join(f"{q}/{p}" for q, p in families.closed_form_pairs())
            raise SpecError(
                f"kl = 'analytic' but KL({self.posterior.name} ‖ {self.prior.name}) has no "
                f"closed form; set kl = 'monte-carlo' (pairs with a closed form: {pairs})")
        if self.prior.uses_encoder and (not self.posterior.amortized
                                        or self.posterior.sites != ("z",)):
            raise SpecError(
                f"prior family {self.prior.name!r} is a mixture of the guide's q(z | u) at "
                f"learned pseudo-inputs u, so it needs an encoder and a single code site z; "
                f"posterior family {self.posterior.name!r} has "
                + ("no encoder" if not self.posterior.amortized else
                   f"the sites {', '.join(self.posterior.sites)}")
                + ": use posterior family 'gaussian' or 'laplace', or another prior")
        if not _is_positive_number(self.scale_floor):
            raise SpecError(f"scale_floor must be a finite number > 0, got {self.scale_floor!r}")
        self._check_image_networks()
        self._check_condition()

    def _check_condition(self) -> None:
        cond = self.condition
        if cond is None:
            return
        if not self.posterior.amortized:
            raise SpecError("[condition] needs an encoder that reads the label; posterior "
                            "family 'none' has none: use family 'gaussian' (with an "
                            "[encoder]) or remove the [condition] table")
        if self.decoder.masked_layers:
            raise SpecError("[condition] is not supported with a local autoregressive "
                            "decoder ([decoder] masked_layers); remove one of them")
        if self.prior.uses_encoder:
            raise SpecError(f"[condition] is not supported with prior family "
                            f"{self.prior.name!r}: its components are the encoder's posterior "
                            "at pseudo-inputs, which carry no label; use a learned-normal "
                            "prior with [condition] prior = 'learned', or remove [condition]")
        if cond.learned_prior and self.prior.name not in CLASS_PRIOR_FAMILIES:
            raise SpecError(f"[condition] prior = 'learned' gives each class its own location "
                            f"and scale, which prior family {self.prior.name!r} does not have; "
                            f"set [prior] family to one of {', '.join(CLASS_PRIOR_FAMILIES)}, "
                            "or [condition] prior = 'fixed'")

    def _check_image_networks(self) -> None:
        if self.encoder is not None and self.encoder.masked_layers:
            raise SpecError("[encoder] masked_layers applies to decoders only")
        for role in ("encoder", "decoder"):
            net = getattr(self, role)
            if net is None or net.kind != "conv":
                continue
            try:
                _, height, width = networks.image_geometry(self.data_shape)
                networks.output_paddings(height, net)
                networks.output_paddings(width, net)
            except ValueError as err:
                raise SpecError(f"[{role}] {err}") from None
        if self.decoder.masked_layers:
            if len(self.data_shape) not in (2, 3) or networks.image_geometry(
                    self.data_shape)[0] != 1:
                raise SpecError(f"[decoder] masked_layers needs one-channel images, data_shape "
                                f"= [H, W] or [1, H, W]; got {list(self.data_shape)}")
            if self.likelihood.data_kind != "binary":
                raise SpecError(f"[decoder] masked_layers supports the bernoulli likelihood "
                                f"only (binary data), got {self.likelihood.name!r}")

    @property
    def data_dim(self) -> int:
        """Number of values in one datapoint (the MLP input size)."""
        return math.prod(self.data_shape)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_training(self, **changes: Any) -> ModelSpec:
        """A copy with some ``[training]`` fields changed (validated again)."""
        if not changes:
            return self
        return self.replace(training=dataclasses.replace(self.training, **changes))

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped dict that :func:`from_dict` reads back to an equal spec."""
        out: dict[str, Any] = {"name": self.name, "description": self.description,
                               "latent_dim": self.latent_dim, "data_shape": list(self.data_shape),
                               "kl": self.kl, "scale_floor": self.scale_floor}
        for role in ("posterior", "prior", "likelihood"):
            fam = getattr(self, role)
            out[role] = {"family": fam.name, **dataclasses.asdict(fam)}
        for role in ("encoder", "decoder"):
            net = getattr(self, role)
            if net is not None:
                out[role] = net.to_dict()
        out["training"] = {k: v for k, v in dataclasses.asdict(self.training).items()
                           if v is not None}  # TOML has no null: a left-out field is None
        if self.condition is not None:
            out["condition"] = dataclasses.asdict(self.condition)
        return out


_TOP_LEVEL = {"name", "description", "latent_dim", "data_shape", "kl", "scale_floor",
              "posterior", "prior", "likelihood", "encoder", "decoder", "training", "condition"}
_REQUIRED = ("name", "latent_dim", "data_shape", "posterior", "prior", "likelihood", "decoder")


def from_dict(raw: dict[str, Any], source: str = "<dict>") -> ModelSpec:
    """Build a spec from a TOML-shaped dict; errors name ``source`` and the field."""
    def fail(message: str) -> SpecError:
        return SpecError(f"{source}: {message}")

    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise fail(f"unknown field(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(sorted(_TOP_LEVEL))}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise fail(f"missing required field(s) {', '.join(missing)}")
    for where, value in _leaves(raw):
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(f"{where} = {value}: every number in a spec must be finite")
    try:
        kwargs: dict[str, Any] = {k: raw[k] for k in
                                  ("name", "description", "latent_dim", "data_shape", "kl",
                                   "scale_floor") if k in raw}
        kwargs["posterior"] = _family(raw["posterior"], "posterior", POSTERIORS, fail)
        kwargs["prior"] = _family(raw["prior"], "prior", PRIORS, fail)
        kwargs["likelihood"] = _family(raw["likelihood"], "likelihood", LIKELIHOODS, fail)
        kwargs["encoder"] = _section(raw["encoder"], "encoder", NetworkSpec, fail) \
            if "encoder" in raw else None
        kwargs["decoder"] = _section(raw["decoder"], "decoder", NetworkSpec, fail)
        if "training" in raw:
            kwargs["training"] = _section(raw["training"], "training", TrainingDefaults, fail)
        if "condition" in raw:
            kwargs["condition"] = _section(raw["condition"], "condition", ConditionSpec, fail)
        return ModelSpec(**kwargs)
    except SpecError as err:
        if str(err).startswith(source):
            raise
        raise fail(str(err)) from None


def loads(text: str, source: str = "<string>") -> ModelSpec:
    """Read a spec from TOML text; ``source`` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: not valid TOML ({err})") from None
    return from_dict(raw, source=source)


def load(path: str | Path) -> ModelSpec:
    """Read a spec from a TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path} is a folder; pass a spec file (models/NAME.toml) or a zoo "
                        "model name") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason}); a "
                        "spec is TOML text, save it as UTF-8") from None
    return loads(text, source=str(path))


def _leaves(raw: Any, where: str = "") -> list[tuple[str, Any]]:
    """(dotted field name, value) of every scalar in a TOML-shaped dict."""
    if isinstance(raw, dict):
        return [leaf for k, v in raw.items()
                for leaf in _leaves(v, f"{where}.{k}" if where else str(k))]
    if isinstance(raw, list):
        return [leaf for i, v in enumerate(raw) for leaf in _leaves(v, f"{where}[{i}]")]
    return [(where, raw)]


def _family(raw: Any, role: str, table: dict[str, type], fail) -> Any:
    if not isinstance(raw, dict) or "family" not in raw:
        raise fail(f"[{role}] needs a 'family' key; allowed: {', '.join(table)}")
    options = dict(raw)
    name = options.pop("family")
    if name not in table:
        raise fail(f"[{role}] family = {name!r} is not a known {role} family; "
                   f"allowed: {', '.join(table)}")
    cls = table[name]
    allowed = families.family_options(cls)
    extra = sorted(set(options) - set(allowed))
    if extra:
        hint = f"allowed: {', '.join(allowed)}" if allowed else "it takes no options"
        raise fail(f"[{role}] {', '.join(extra)} does not apply to family {name!r}; {hint}")
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for key, value in options.items():
        if isinstance(value, bool) and not isinstance(defaults[key], bool):
            raise fail(f"[{role}] {key} = {str(value).lower()}: family {name!r} takes a "
                       f"number or a name here (default {defaults[key]!r}), not true/false")
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise fail(f"[{role}] family {name!r}: {err}") from None


def _section(raw: Any, role: str, cls: type, fail) -> Any:
    if not isinstance(raw, dict):
        raise fail(f"[{role}] must be a table")
    allowed = [f.name for f in dataclasses.fields(cls)]
    extra = sorted(set(raw) - set(allowed))
    if extra:
        raise fail(f"[{role}] unknown field(s) {', '.join(extra)}; allowed: {', '.join(allowed)}")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as err:
        raise fail(f"[{role}] {err}") from None
