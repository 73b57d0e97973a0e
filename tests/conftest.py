"""Shared test set-up: a clean Pyro param store, Pyro validation on, seeded RNGs for every test."""

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    torch.set_default_dtype(torch.float64)
    yield
    pyro.clear_param_store()
