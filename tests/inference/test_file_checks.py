"""Our own files are checked before they are read: shapes, dtypes and sizes against the metadata.

``FitResult.load`` (fit.npz) and ``load_neural_rule`` (rule.pt) raise a ``ValueError`` naming the file and the
field, never a bare RuntimeError or KeyError, and never allocate what a corrupt header declares.
"""

import io
import json
import re
import zipfile

import numpy as np
import pytest
import torch

from learnrules.behavior import load_trials
from learnrules.inference.result import FitResult
from learnrules.inference.variational.fit import FitConfig, fit
from learnrules.models.inputs import CohortTensors
from learnrules.models.neural import MLPRule, load_neural_rule, save_neural_rule
from learnrules.other_rules.registry import make_rule
from learnrules.synthetic.cohort import simulate_cohort


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    sim = simulate_cohort(make_rule("reinforce"), n_animals=2, n_trials=30, sigma=0.02, seed=0, dtype=torch.float64)
    data = CohortTensors.from_trials(load_trials(sim.table), ("bias", "stimulus"), dtype=torch.float64)
    return fit(data, config=FitConfig(max_steps=2, param_posterior="none")).save(
        tmp_path_factory.mktemp("fit") / "fit.npz")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _rewrite(source, target, replace: dict[str, bytes | None]):
    """Copy the npz ``source`` to ``target`` with members replaced (bytes) or dropped (None)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            name = info.filename[:-4]
            if name not in replace:
                new.writestr(info, old.read(info))
            elif replace[name] is not None:
                new.writestr(info.filename, replace[name])
    return target


def _huge_header(shape: tuple[int, ...]) -> bytes:
    """An .npy member whose header declares ``shape`` (float64) but holds no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_a_saved_result_loads(saved):
    back = FitResult.load(saved)
    assert back.weights_mean.shape[0] == 2


@pytest.mark.parametrize("replace, message", [
    ({"weights_sd": _npy(np.zeros((2, 3, 2)))}, r"field 'weights_sd': shape \(2, 3, 2\) disagrees with the metadata"),
    ({"init_mean": _npy(np.zeros((3, 2)))}, r"field 'init_mean': shape \(3, 2\) disagrees .* \(expected \(2, 2\)\)"),
    ({"weights_mean": _npy(np.zeros((5, 30, 2)))}, r"field 'weights_mean': shape \(5, 30, 2\) is not \(animals=2"),
    ({"sigma": None}, r"field 'sigma': missing"),
    ({"valid": _npy(np.array(["x"] * 60).reshape(2, 30))}, r"field 'valid': dtype <U1 is not numeric"),
    ({"weights_cov": _huge_header((2, 2**25, 2, 2))}, r"field 'arrays': declare \d+ MiB of data in a file of"),
    ({"meta": _npy(np.array("{not json"))}, r"field 'meta': not JSON"),
    ({"meta": _npy(np.array(json.dumps({"subjects": ["a"]})))}, r"field 'meta\.feature_names': missing"),
], ids=["sd shape", "init shape", "animals", "missing array", "text dtype", "inflation", "bad json", "meta key"])
def test_a_corrupt_result_is_refused_naming_file_and_field(saved, tmp_path, replace, message):
    bad = _rewrite(saved, tmp_path / "bad.npz", replace)
    with pytest.raises(ValueError, match=re.escape(repr(str(bad))) + ", " + message):
        FitResult.load(bad)


def test_a_file_of_another_kind_is_refused(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"x\.npz' is not a fit\.npz written by FitResult\.save"):
        FitResult.load(tmp_path / "x.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"one\.npy' is one array, not a fit\.npz"):
        FitResult.load(tmp_path / "one.npy")


@pytest.fixture
def rule_file(tmp_path):
    path = tmp_path / "rule.pt"
    save_neural_rule(MLPRule(2, hidden=(8, 8), seed=0), path)
    return path


def test_a_saved_rule_loads(rule_file):
    assert load_neural_rule(rule_file).config.hidden == (8, 8)


def test_a_rule_whose_config_disagrees_with_its_state_is_refused(rule_file):
    blob = torch.load(rule_file, weights_only=True)
    config = json.loads(blob["config"])
    torch.save({"config": json.dumps({**config, "hidden": [4, 8]}), "state": blob["state"]}, rule_file)
    with pytest.raises(ValueError, match=r"rule\.pt', field 'state\.mlp\.0\.bias': shape \(8,\), but the "
                                         r"config's network has \(4,\)"):
        load_neural_rule(rule_file)
    torch.save({"config": json.dumps({**config, "kind": "transformer"}), "state": blob["state"]}, rule_file)
    with pytest.raises(ValueError, match=r"rule\.pt', field 'config': ValueError: .*transformer"):
        load_neural_rule(rule_file)
    torch.save({"config": blob["config"], "state": {**blob["state"], "extra": torch.zeros(1)}}, rule_file)
    with pytest.raises(ValueError, match=r"field 'state\.extra': not part of the network the config describes"):
        load_neural_rule(rule_file)
    torch.save({"config": blob["config"]}, rule_file)
    with pytest.raises(ValueError, match=r"fields 'config' \(JSON text\) and 'state' \(tensors\): missing"):
        load_neural_rule(rule_file)


def test_a_rule_file_that_would_inflate_or_is_not_a_rule_is_refused(rule_file, tmp_path):
    inflated = tmp_path / "inflated.pt"
    with zipfile.ZipFile(rule_file) as old, zipfile.ZipFile(inflated, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info))
        new.writestr("archive/data/big", b"\0" * 2**22)  # 4 MiB that compress to a few KiB
    with pytest.raises(ValueError, match=r"inflated\.pt': its members declare \d+ bytes in a file of \d+"):
        load_neural_rule(inflated)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.pt' is not a rule\.pt written by save_neural_rule"):
        load_neural_rule(tmp_path / "text.pt")
