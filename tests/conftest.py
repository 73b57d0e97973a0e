"""Shared test set-up: a clean Pyro param store, Pyro validation on, seeded RNGs for every test."""

import pyro
import pytest
import torch


def pytest_configure(config):
    # One intra-op thread for the whole session, set once: the tests' tensors are small, and raising the
    # count again after MKL has run hangs LAPACK (torch 2.13 CPU build), so no test may change it back up.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    torch.set_default_dtype(torch.float64)
    yield
    pyro.clear_param_store()
