"""Fixtures of the data tests."""

import pytest

from ppl_vae import data
from ppl_vae.data import RawData


@pytest.fixture(scope="module")
def mnist() -> RawData:
    return data.load_mnist5k()
