"""The sample-quality classifier: its scores, its weights without pickle, its cache."""

import math

import numpy as np
import pytest

from ppl_vae.data import prepare
from ppl_vae.evaluation import sample_quality
from ppl_vae.evaluation.sample_quality import Classifier, classifier_for, sample_scores


def _one_layer(logits_of_classes: np.ndarray) -> Classifier:
    """A classifier whose logits are the inputs themselves (identity weights)."""
    c = logits_of_classes.shape[1]
    return Classifier(((np.eye(c), np.zeros(c)),), accuracy=math.nan)


def test_scores_of_confident_balanced_and_of_identical_samples():
    confident = np.eye(4)[np.arange(40) % 4] * 60.0  # one-hot after softmax, all classes
    scores = sample_scores(_one_layer(confident), confident)
    assert scores["confidence"] == pytest.approx(1.0, abs=1e-12)
    assert scores["class_entropy"] == pytest.approx(math.log(4), abs=1e-12)
    assert scores["inception_score"] == pytest.approx(4.0, abs=1e-9)  # = number of classes
    same = np.tile([[3.0, 0.0, 0.0, 0.0]], (10, 1))  # every sample alike: no diversity
    assert sample_scores(_one_layer(same), same)["inception_score"] == pytest.approx(1.0)


def test_classifier_is_cached_by_fingerprint_and_matches_scikit_learn(tmp_path, monkeypatch):
    splits = prepare("digits", likelihood="bernoulli")
    trained = []
    original = sample_quality.train_classifier

    def counting(*args, **kwargs):
        trained.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sample_quality, "train_classifier", counting)
    first = classifier_for(splits, folder=tmp_path)
    again = classifier_for(splits, folder=tmp_path)
    assert len(trained) == 1 and len(list(tmp_path.glob("*.safetensors"))) == 1
    for (w1, b1), (w2, b2) in zip(first.layers, again.layers, strict=True):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    # a working classifier of 10 digits: far above chance on held-out data
    assert first.accuracy > 0.8 and again.accuracy == first.accuracy
    classifier_for(splits, seed=1, folder=tmp_path)  # other settings: a new fingerprint
    assert len(trained) == 2

    from sklearn.neural_network import MLPClassifier

    reference = MLPClassifier(hidden_layer_sizes=(sample_quality.HIDDEN,),
                              max_iter=sample_quality.MAX_ITER, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(splits.train.astype(np.float64), splits.train_labels)
    np.testing.assert_allclose(first.predict_proba(splits.test),
                               reference.predict_proba(splits.test.astype(np.float64)),
                               rtol=1e-9, atol=1e-12)


def test_two_classes_give_logistic_probabilities_and_finite_scores():
    """scikit-learn keeps one logistic output for C = 2: the probabilities must match its
    predict_proba exactly (softmax of one column alone would be 1.0 everywhere), and the
    scores of the two digits 0 and 1 must reflect two classes."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    splits = prepare("digits", likelihood="bernoulli")
    keep = splits.train_labels < 2
    x, labels = splits.train[keep], splits.train_labels[keep]
    clf = sample_quality.train_classifier(x, labels, max_iter=50)
    assert clf.layers[-1][0].shape[1] == 1  # the single logistic column
    reference = MLPClassifier(hidden_layer_sizes=(sample_quality.HIDDEN,), max_iter=50,
                              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(x.astype(np.float64), labels)
    test = splits.test[splits.test_labels < 2]
    p = clf.predict_proba(test)
    assert p.shape == (len(test), 2)
    np.testing.assert_allclose(p, reference.predict_proba(test.astype(np.float64)),
                               rtol=1e-9, atol=1e-12)
    scores = sample_scores(clf, test)
    # real digits 0 and 1 in both classes: entropy of the class mix near log 2, not 0
    assert 0.5 * math.log(2) < scores["class_entropy"] <= math.log(2) + 1e-12
    assert 1.0 < scores["inception_score"] <= 2.0 + 1e-9
