r"""Sample quality next to likelihood: a small classifier of the dataset's labels scores a
model's samples.

High likelihood does not imply good samples (Theis et al. 2016). A classifier trained on the
data's labels gives sample-quality numbers on the data at hand, in the spirit of the
Inception score (Salimans et al. 2016) with a small MLP in place of Inception. With
p(y | x) the classifier's class probabilities of a sample and p(y) = mean over samples:

* ``confidence``: mean of max_y p(y | x) (sharp, recognisable samples score near 1);
* ``class_entropy``: H[p(y)] in nats (diversity; log C when every class is equally common);
* ``inception_score``: exp(E_x KL(p(y | x) ‖ p(y))) = exp(H[p(y)] − E_x H[p(y | x)]),
  between 1 (all samples alike or all ambiguous) and C (confident and balanced).

The classifier (scikit-learn's ``MLPClassifier``, seeded) is trained once per data
fingerprint and cached under the user's cache directory as safetensors (weights only, never
pickle); a change of the data, the labels or the settings gives a new fingerprint and a new
classifier. A file lock keeps parallel workers from training the same one twice.

References
----------
Salimans, T. et al. (2016). Improved techniques for training GANs. NeurIPS.
Theis, L., van den Oord, A. and Bethge, M. (2016). A note on the evaluation of generative
models. ICLR.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppl_vae.io import load_arrays, save_arrays

HIDDEN = 128
MAX_ITER = 40
CACHE_ENV = "PPL_VAE_CACHE_DIR"
"""Environment variable that overrides the cache folder (default: the user cache dir)."""

__all__ = ["CACHE_ENV", "Classifier", "cache_dir", "classifier_for", "fingerprint",
           "sample_scores", "train_classifier"]


@dataclass(frozen=True, eq=False)
class Classifier:
    """An MLP's weights: ``layers`` of (W, b), ReLU between them, softmax at the end. With two
    classes scikit-learn keeps one output column h, the logit of class 1: its class
    probabilities are then (1 − σ(h), σ(h)) = softmax([0, h])."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    accuracy: float
    """Accuracy on the held-out data it was checked on (NaN without any)."""

    def predict_proba(self, x: Any) -> np.ndarray:
        h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        if h.shape[1] == 1:  # two classes, one logistic output
            h = np.concatenate([np.zeros_like(h), h], axis=1)
        h = h - h.max(axis=1, keepdims=True)
        p = np.exp(h)
        return p / p.sum(axis=1, keepdims=True)


def fingerprint(x: Any, labels: Any, *, seed: int = 0, hidden: int = HIDDEN,
                max_iter: int = MAX_ITER) -> str:
    """SHA-256 of the training data, labels and classifier settings."""
    x, labels = np.ascontiguousarray(x), np.ascontiguousarray(labels)
    digest = hashlib.sha256(f"{x.shape}{x.dtype}{labels.dtype}{seed}-{hidden}-{max_iter}"
                            .encode())
    digest.update(x.tobytes())
    digest.update(labels.tobytes())
    return digest.hexdigest()


def train_classifier(x: Any, labels: Any, *, seed: int = 0, hidden: int = HIDDEN,
                     max_iter: int = MAX_ITER, valid: Any = None,
                     valid_labels: Any = None) -> Classifier:
    """Fit a one-hidden-layer MLP classifier (Adam, a fixed number of epochs)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    labels = np.asarray(labels)
    classes = np.unique(labels)
    if not np.array_equal(classes, np.arange(len(classes))):
        raise ValueError(f"labels must be 0..C-1 for the sample-quality classifier; got "
                         f"classes {classes[:10].tolist()}")
    model = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():  # a fixed budget of epochs is the intent, not a problem
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asarray(x, dtype=np.float64).reshape(len(x), -1), labels)
    layers = tuple((w.astype(np.float64), b.astype(np.float64))
                   for w, b in zip(model.coefs_, model.intercepts_, strict=True))
    accuracy = float("nan")
    if valid is not None:
        clf = Classifier(layers, accuracy)
        accuracy = float((clf.predict_proba(valid).argmax(1) == np.asarray(valid_labels))
                         .mean())
    return Classifier(layers, accuracy)


def cache_dir() -> Path:
    """``$PPL_VAE_CACHE_DIR`` or the user's cache directory (``~/.cache/ppl_vae`` on Linux),
    subfolder ``classifiers``."""
    import platformdirs

    root = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("ppl_vae")
    return Path(root) / "classifiers"


def classifier_for(splits: Any, *, seed: int = 0, folder: str | Path | None = None) -> Classifier:
    """The cached classifier of ``splits`` (train on train, accuracy on test), training it
    when its fingerprint is not in the cache yet."""
    from filelock import FileLock

    if splits.train_labels is None:
        raise ValueError(f"{splits.name} has no labels: the sample-quality classifier needs "
                         "a labelled dataset")
    key = fingerprint(splits.train, splits.train_labels, seed=seed)
    folder = Path(folder) if folder is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key[:32]}.safetensors"
    with FileLock(str(path) + ".lock"):
        if path.exists():
            return _load(path)
        clf = train_classifier(splits.train, splits.train_labels, seed=seed, valid=splits.test,
                               valid_labels=splits.test_labels)
        arrays = {f"w{k}": w for k, (w, _) in enumerate(clf.layers)}
        arrays |= {f"b{k}": b for k, (_, b) in enumerate(clf.layers)}
        save_arrays(path, arrays, metadata={"accuracy": repr(clf.accuracy), "fingerprint": key})
        return clf


def _load(path: Path) -> Classifier:
    from safetensors import safe_open

    arrays = load_arrays(path)
    with safe_open(str(path), framework="numpy") as fh:
        accuracy = float(fh.metadata()["accuracy"])
    layers = tuple((arrays[f"w{k}"], arrays[f"b{k}"]) for k in range(len(arrays) // 2))
    return Classifier(layers, accuracy)


def sample_scores(classifier: Classifier, samples: Any) -> dict[str, float]:
    """``confidence``, ``class_entropy`` (nats) and ``inception_score`` of ``samples``."""
    p = classifier.predict_proba(samples)
    marginal = p.mean(axis=0)

    def entropy(q: np.ndarray) -> np.ndarray:
        return -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=-1)

    class_entropy = float(entropy(marginal))
    return {"confidence": float(p.max(axis=1).mean()), "class_entropy": class_entropy,
            "inception_score": float(np.exp(class_entropy - entropy(p).mean()))}
