"""Latent views of the run report, on a stand-in model whose encoder and decoder are known."""

import numpy as np

from ppl_vae.evaluation.latent_views import interpolations, latent_codes, traversals


class _Identity:
    """encode(x) = x (the data are the codes), decode_or_draw(z) = z."""

    def encode(self, x, idx=None):
        return np.asarray(x)

    def decode_or_draw(self, z, c=None, seed=None):
        return np.asarray(z, dtype=np.float64)


def test_codes_view_is_the_top_two_principal_components():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 3)) * np.array([0.5, 3.0, 1.5])  # dims 1 > 2 > 0 in spread
    codes = latent_codes(_Identity(), z, labels=np.arange(400) % 4)
    view = codes[["view_1", "view_2"]].to_numpy()
    eigen = np.sort(np.linalg.eigvalsh(np.cov(z.T)))[::-1]
    np.testing.assert_allclose(view.var(axis=0, ddof=1), eigen[:2], rtol=1e-10)
    assert codes["label"].tolist()[:5] == [0, 1, 2, 3, 0]
    two = latent_codes(_Identity(), z[:, :2])  # d <= 2: the codes themselves
    np.testing.assert_array_equal(two[["view_1", "view_2"]].to_numpy(), z[:, :2])
    assert (two["label"] == -1).all()


def test_traversals_move_the_most_variable_dimension_first_between_its_quantiles():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(500, 3)) * np.array([0.5, 3.0, 1.5])
    codes = latent_codes(_Identity(), z)
    images = traversals(_Identity(), codes, num_dims=2, num_steps=5)
    assert images.shape == (10, 3)
    first = images[:5]  # dimension 1 (the widest) moves, the others stay at the mean
    np.testing.assert_allclose(first[:, 1], np.quantile(z[:, 1], np.linspace(0.05, 0.95, 5)),
                               rtol=1e-6)
    np.testing.assert_allclose(first[:, [0, 2]], np.tile(z.mean(0)[[0, 2]], (5, 1)), rtol=1e-6)
    np.testing.assert_allclose(images[5:, 2],
                               np.quantile(z[:, 2], np.linspace(0.05, 0.95, 5)), rtol=1e-6)


def test_interpolations_join_codes_of_different_labels():
    z = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [4.0, 4.0]])
    codes = latent_codes(_Identity(), z, labels=np.array([7, 7, 3, 3]))
    lines = interpolations(_Identity(), codes, num_pairs=2, num_steps=3)
    # pairs (0, 2) and (1, 3): the first differently-labelled partner of each unused code
    np.testing.assert_allclose(lines, [[0, 0], [1, 0], [2, 0], [1, 1], [2.5, 2.5], [4, 4]])
