"""Independent fits in parallel: ``compare`` gives the same tables on 1 or 2 local processes and on a Dask
cluster; a failed fit is named by rule and fold while the others finish; one progress bar counts every fit.

A 4 animals x 300 trials REINFORCE cohort, parametric rules capped at a few optimizer steps: the tests check
where fits run, not how well they fit.
"""

import re

import numpy as np
import pandas as pd
import pytest

from learnrules import cli
from learnrules.behavior.load import load_trials
from learnrules.inference.evaluation.crossval import animal_folds
from learnrules.parallel import ParallelConfig, Task, TaskFailure, run_tasks
from learnrules.workflow import FitsFailed, cross_validate_rules, fit_model

RULES = "zero,reinforce,reinforce-baseline"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("parallel") / "sim.csv"
    assert cli.main(["simulate", "--rule", "reinforce", "--animals", "4", "--trials", "300", "--seed", "3",
                     "--out", str(path), "--quiet"]) == 0
    return path


def _compare(table, out, *extra):
    assert cli.main(["compare", str(table), "--rules", RULES, "--folds", "2", "--max-steps", "4", "--out", str(out),
                     "--quiet", *extra]) == 0
    return pd.read_csv(out / "compare.csv"), pd.read_csv(out / "crossval.csv")


@pytest.fixture(scope="module")
def serial(table, tmp_path_factory):
    return _compare(table, tmp_path_factory.mktemp("serial") / "cmp", "--jobs", "1")


def _check_tables(serial, other):
    cmp, cv = serial
    assert sorted(cmp["rule"]) == sorted(RULES.split(","))
    assert len(cv) == 3 * 4  # every rule scores each animal once, in the fold that holds it out
    assert np.all(np.isfinite(cmp["nats_per_trial"])) and np.all(cmp["nats_per_trial"] < 0)
    pd.testing.assert_frame_equal(other[0], cmp, check_exact=True)
    pd.testing.assert_frame_equal(other[1], cv, check_exact=True)


def test_compare_tables_identical_for_jobs_1_and_2(table, serial, tmp_path):
    _check_tables(serial, _compare(table, tmp_path / "cmp", "--jobs", "2"))


def test_compare_on_a_dask_cluster_gives_the_local_tables(table, serial, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        _check_tables(serial, _compare(table, tmp_path / "cmp", "--scheduler", cluster.scheduler_address))


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_fit_is_named_and_the_others_finish(table, jobs):
    data = load_trials(table)
    folds = animal_folds(data, k=2, seed=0)
    fit = _Failing(folds[1].train.subjects)
    with pytest.raises(FitsFailed) as caught:
        cross_validate_rules(data, ["zero", "reinforce", "reinforce+mlp"], fit, folds=folds,
                             parallel=ParallelConfig(jobs=jobs))
    failures = caught.value.failures
    assert [f.label for f in failures] == ["rule reinforce, fold 1", "rule reinforce+mlp, fold 1"]
    assert "FloatingPointError: diverged on purpose" in failures[0].error and "diverged" in failures[0].traceback
    assert "its parametric stage reinforce failed" in failures[1].error
    assert "rule reinforce, fold 1: FloatingPointError" in str(caught.value)
    done = caught.value.completed
    assert set(zip(done["rule"], done["fold"], strict=True)) == {("zero", 0), ("reinforce", 0),
                                                                 ("reinforce+mlp", 0), ("zero", 1)}
    assert len(done) == 4 * 2 and np.all(done["nats_per_trial"] < 0)


class _Failing:
    """A fit that raises for the reinforce rule on the training animals ``subjects``."""

    def __init__(self, subjects):
        self.subjects = subjects

    def __call__(self, train, name, start):
        if name == "reinforce" and train.subjects == self.subjects:
            raise FloatingPointError("diverged on purpose")
        return fit_model(train, name, max_steps=4, start=start, progress=False)


def test_compare_cli_writes_finished_rows_and_failures(table, tmp_path, monkeypatch, capsys):
    from learnrules import commands

    real = commands._fit

    def failing(data, name, args, features, **kw):
        if name == "reinforce":
            raise FloatingPointError("diverged on purpose")
        return real(data, name, args, features, **kw)

    monkeypatch.setattr(commands, "_fit", failing)
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(table), "--rules", RULES, "--folds", "2", "--max-steps", "4", "--out", str(out),
                     "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert "2 fit(s) failed: rule reinforce, fold 0: FloatingPointError: diverged on purpose; rule reinforce, fold 1" \
        in err
    assert set(pd.read_csv(out / "crossval.csv")["rule"]) == {"zero", "reinforce-baseline"}
    assert list(pd.read_csv(out / "failures.csv")["label"]) == ["rule reinforce, fold 0", "rule reinforce, fold 1"]
    assert not (out / "compare.csv").exists()


def test_one_progress_bar_counts_every_fit(table, capsys):
    data = load_trials(table)
    cross_validate_rules(data, ["zero", "reinforce+mlp"], lambda train, name, start: fit_model(
        train, name, max_steps=2, start=start, progress=False), k=2, progress=True)
    bars = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("fits")]
    # per fold: reinforce (the hybrid's stage) and zero, then the hybrid: 6 fits in one bar
    assert bars and bars[-1].startswith("fits: 100%") and "6/6" in bars[-1]
    assert all("/6" in line for line in bars)


def test_run_tasks_keeps_order_and_reports_failures():
    tasks = [Task(f"t{i}", divmod, (10, i)) for i in (3, 0, 4)]
    for config in (ParallelConfig(jobs=1), ParallelConfig(jobs=2)):
        out = run_tasks(tasks, config)
        assert out[0] == (3, 1) and out[2] == (2, 2)
        assert isinstance(out[1], TaskFailure) and out[1].label == "t0"
        assert out[1].error == "ZeroDivisionError: integer division or modulo by zero"
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        ParallelConfig(jobs=0)


def test_data_several_tasks_take_is_sent_to_a_dask_cluster_once(table):
    from learnrules.parallel import _shared

    fold = animal_folds(load_trials(table), k=2, seed=0)[0]
    tasks = [Task(f"t{i}", fit_model, (fold, name, None, 3)) for i, name in enumerate(["zero", "reinforce"])]
    assert _shared(tasks) == [fit_model, fold]  # the names, None and numbers travel with each task


@pytest.mark.parametrize(("rule", "method"), [("reinforce+mlp", "variational"), ("mlp", "rollout")])
def test_restarts_in_parallel_give_the_serial_fit(table, rule, method):
    data = load_trials(table)

    def run(jobs):
        return fit_model(data, rule, method=method, restarts=2, max_steps=2, seed=0, progress=False,
                         hidden=(4,), parallel=ParallelConfig(jobs=jobs))

    serial, parallel = run(1), run(2)
    scores = {k: v for k, v in serial.validation.items() if k.startswith("heldout_ll_seed_")}
    assert set(scores) == {"heldout_ll_seed_0", "heldout_ll_seed_1"} and all(-1 < v < 0 for v in scores.values())
    assert parallel.validation == serial.validation
    np.testing.assert_array_equal(parallel.result.weights_mean, serial.result.weights_mean)
    assert re.sub(r"\d+ s in all", "", parallel.note) == re.sub(r"\d+ s in all", "", serial.note)  # not the time


def test_fit_heldout_names_the_failed_fold(table, tmp_path, monkeypatch, capsys):
    from learnrules import commands

    real = commands._fit

    def failing(data, name, args, features, *, intervals=True, **kw):
        if not intervals and data.n_trials > 0:  # the held-out folds' fits
            raise FloatingPointError("diverged on purpose")
        return real(data, name, args, features, intervals=intervals, **kw)

    monkeypatch.setattr(commands, "_fit", failing)
    sessions = pd.read_csv(table)
    sessions["session"] = sessions["trial"] // 100  # 3 sessions per animal
    sessions.to_csv(tmp_path / "sessions.csv", index=False)
    out = tmp_path / "fit"
    assert cli.main(["fit", str(tmp_path / "sessions.csv"), "--rule", "reinforce", "--heldout", "--folds", "2",
                     "--max-steps", "3", "--jobs", "1", "--out", str(out)]) == 2
    assert "learnrules: error: rule reinforce, fold 0: diverged on purpose" in capsys.readouterr().err
    assert not out.exists()


def _fit_small(train, name, start):
    return fit_model(train, name, max_steps=2, start=start, progress=False, seed=0)


def test_neural_rules_started_from_the_folds_parametric_fits_match_across_jobs(table):
    data = load_trials(table)
    rules = ["reinforce+mlp", "zero", "reinforce-baseline+mlp"]
    serial = cross_validate_rules(data, rules, _fit_small, k=2, parallel=ParallelConfig(jobs=1))
    parallel = cross_validate_rules(data, rules, _fit_small, k=2, parallel=ParallelConfig(jobs=2))
    assert list(serial["rule"].unique()) == rules and len(serial) == 3 * 4
    assert np.all(serial["nats_per_trial"].between(-1, 0))
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)
