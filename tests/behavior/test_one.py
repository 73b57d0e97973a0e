"""IBL trials through ONE, for real: ONE in local mode on an ALF tree the test writes, indexed by ONE's own tools.

The tree holds a simulated cohort's trials in IBL's ``lab/Subjects/subject/date/number/alf/`` layout, as
``_ibl_trials.<attribute>.npy`` files; ``one.alf.cache.make_parquet_db`` indexes it. That tool cannot know the
task protocols (Alyx's caches carry them), so the test writes them into the sessions table with ONE's parquet
helpers, as the public IBL cache holds them.
"""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("one.api")

from iblutil.io import parquet  # noqa: E402  (ONE-api's dependency)
from one.alf.cache import make_parquet_db  # noqa: E402

from learnrules.behavior import load_trials  # noqa: E402
from learnrules.behavior.one import load_one, one_trials_table, open_one  # noqa: E402
from learnrules.inference import fit  # noqa: E402
from learnrules.other_rules import make_rule  # noqa: E402
from learnrules.synthetic.cohort import simulate_cohort  # noqa: E402
from learnrules.synthetic.task import IBLTask  # noqa: E402

TRAINING = "_iblrig_tasks_trainingChoiceWorld6.4.2"
BIASED = "_iblrig_tasks_biasedChoiceWorld6.4.2"
# Simulated session -> (date, number, protocol). Sessions 0 and 1 share a date (numbers 1 and 2) and session 2
# is later with number 1: ordering by number alone, or by folder listing, would put the sessions out of order.
LAYOUT = {0: ("2024-03-04", 2, TRAINING), 1: ("2024-03-04", 3, TRAINING), 2: ("2024-03-05", 1, BIASED)}
ATTRIBUTES = ("choice", "feedbackType", "contrastLeft", "contrastRight", "probabilityLeft")


def _ibl_table() -> pd.DataFrame:
    """A REINFORCE cohort (2 mice x 3 sessions of 200 trials) in IBL codes, with a few no-go trials."""
    cohort = simulate_cohort(make_rule("reinforce"), n_animals=2, n_trials=600, sigma=0.01, seed=3,
                             init_sd=0.3, task=IBLTask(session_length=200))
    table = cohort.to_ibl_table()
    nogo = [17, 230, 431]  # IBL no-go: choice 0, never rewarded
    table.loc[nogo, "choice"] = 0
    table.loc[nogo, "feedbackType"] = -1
    return table


def _write_session(root, subject, date, number, block, *, flip=False):
    folder = root / "cortexlab" / "Subjects" / subject / date / f"{number:03d}" / "alf"
    folder.mkdir(parents=True)
    for name in ATTRIBUTES:
        values = block[name].to_numpy(dtype=float)
        np.save(folder / f"_ibl_trials.{name}.npy", -values if (flip and name == "choice") else values)


def _write_cache(root, table, *, flip=False):
    """Write the table as an ALF tree, index it with ONE, and record the sessions' protocols."""
    for (subject, session), block in table.groupby(["subject", "session"]):
        date, number, _ = LAYOUT[session]
        _write_session(root, subject, date, number, block, flip=flip)
    # A decoy whose name contains 'sim000': ONE's search matches names partially, load_one must not.
    _write_session(root, "sim0001", "2024-03-04", 1, table[table["subject"] == "sim001"].head(50), flip=flip)
    make_parquet_db(root, hash_files=True)
    sessions, meta = parquet.load(root / "sessions.pqt")
    protocol = {(d, n): p for d, n, p in LAYOUT.values()}
    sessions["task_protocol"] = [protocol.get((str(d), int(n)), TRAINING)
                                 for d, n in zip(sessions["date"], sessions["number"], strict=True)]
    parquet.save(root / "sessions.pqt", sessions, meta)
    return open_one(root)


@pytest.fixture(scope="module")
def table():
    return _ibl_table()


@pytest.fixture(scope="module")
def one(table, tmp_path_factory):
    return _write_cache(tmp_path_factory.mktemp("one"), table)


def _assert_same(a, b):
    assert a.subjects == b.subjects and a.choice_coding == b.choice_coding == "ibl"
    assert a.n_nogo_dropped == b.n_nogo_dropped
    for x, y in zip(a.animals, b.animals, strict=True):
        for name in ("session", "trial", "choice", "reward", "answer", "held_out"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
        assert set(x.covariates) == set(y.covariates) == {"contrastLeft", "contrastRight", "probabilityLeft"}
        for name in x.covariates:
            np.testing.assert_array_equal(x.covariates[name], y.covariates[name], err_msg=name)


def test_load_one_gives_the_same_trial_data_as_the_same_trials_read_from_csv(one, table, tmp_path):
    path = tmp_path / "trials.csv"
    table.to_csv(path, index=False)
    from_csv = load_trials(path)
    from_one = load_one(one, ["sim000", "sim001"])
    _assert_same(from_one, from_csv)
    assert from_one.n_nogo_dropped == 3 and from_one.n_trials == 1197
    assert [a.n_sessions for a in from_one] == [3, 3]


def test_sessions_follow_their_dates_and_numbers_and_subject_names_match_exactly(one, table):
    frame = one_trials_table(one, "sim000")
    sessions = frame.drop_duplicates("session")
    assert sessions["session"].tolist() == [0, 1, 2]
    assert sessions["date"].tolist() == ["2024-03-04", "2024-03-04", "2024-03-05"]
    assert sessions["number"].tolist() == [2, 3, 1]
    assert sessions["task_protocol"].tolist() == [TRAINING, TRAINING, BIASED]
    assert set(frame["subject"]) == {"sim000"}  # not the decoy sim0001
    expected = table[table["subject"] == "sim000"]
    np.testing.assert_array_equal(frame["choice"].to_numpy(), expected["choice"].to_numpy())


def test_choice_reads_right_side_up(one, table):
    """IBL choice -1 (counter-clockwise) is a RIGHT choice: coded 1, matching the side with contrast."""
    animal = load_one(one, "sim000", nogo="missing")["sim000"]
    ibl_choice = table.loc[table["subject"] == "sim000", "choice"].to_numpy()
    np.testing.assert_array_equal(animal.choice[ibl_choice == -1], 1.0)
    np.testing.assert_array_equal(animal.choice[ibl_choice == 1], 0.0)
    assert np.isnan(animal.choice[ibl_choice == 0]).all()
    rewarded = animal.reward == 1
    right = animal.covariates["contrastRight"] > animal.covariates["contrastLeft"]
    left = animal.covariates["contrastLeft"] > animal.covariates["contrastRight"]
    assert (rewarded & right).sum() > 100 and (rewarded & left).sum() > 100
    assert (animal.choice[rewarded & right] == 1).all() and (animal.choice[rewarded & left] == 0).all()


def test_fitted_stimulus_weight_is_positive_for_a_simulated_learner(one):
    data = load_one(one, ["sim000", "sim001"])
    result = fit(data, features=("bias", "stimulus"), seed=0)
    stimulus = result.weights[result.weights["feature"] == "stimulus"]
    late = stimulus.groupby("subject")["mean"].apply(lambda m: m.iloc[-200:].mean())
    assert (late > 0.5).all(), late


def test_a_flipped_choice_sign_is_refused(table, tmp_path):
    flipped = _write_cache(tmp_path, table, flip=True)
    with pytest.raises(ValueError, match="choice code looks flipped"):
        load_one(flipped, "sim000")


def test_protocol_filter_keeps_only_matching_sessions(one, table):
    data = load_one(one, "sim000", protocol="trainingChoiceWorld")
    assert data["sim000"].n_sessions == 2
    expected = table[(table["subject"] == "sim000") & (table["session"] < 2) & (table["choice"] != 0)]
    assert data.n_trials == len(expected)
    with pytest.raises(ValueError, match="no session's task protocol contains 'ephysChoiceWorld'"):
        load_one(one, "sim000", protocol="ephysChoiceWorld")


def test_bad_codes_and_unknown_subjects_are_named(one, table, tmp_path):
    with pytest.raises(ValueError, match="subject 'nobody': no sessions"):
        load_one(one, "nobody")
    bad = table.copy()
    bad.loc[5, "feedbackType"] = 0
    root = tmp_path / "bad"
    with pytest.raises(ValueError, match=r"trials.feedbackType\[5\] = 0.0 is not an IBL code"):
        load_one(_write_cache(root, bad), "sim000")
    with pytest.raises(FileNotFoundError, match="no ONE cache tables"):
        open_one(tmp_path)


def test_cli_fits_a_subject_from_a_one_cache(one, table, tmp_path, capsys):
    from learnrules.cli import main

    out = tmp_path / "fit"
    code = main(["fit", "--one-subject", "sim000", "--one-cache", str(one.cache_dir), "--one-protocol",
                 "trainingChoiceWorld", "--rule", "zero", "--out", str(out), "--quiet"])
    assert code == 0
    weights = pd.read_csv(out / "weights.csv")
    assert set(weights["subject"]) == {"sim000"} and weights["session"].nunique() == 2
    expected = (table["subject"] == "sim000") & (table["session"] < 2) & (table["choice"] != 0)
    assert len(weights[weights["feature"] == "stimulus"]) == expected.sum()
    assert weights.loc[weights["feature"] == "stimulus", "mean"].iloc[-100:].mean() > 0.5
    capsys.readouterr()
    assert main(["fit", "trials.csv", "--one-subject", "sim000", "--one-cache", str(one.cache_dir),
                 "--out", str(tmp_path / "x")]) == 2
    assert "--one-subject NAME and --one-cache DIR go together" in capsys.readouterr().err


def test_a_real_mouse_in_the_trials_table_format_reads_as_from_csv(tmp_path):
    """IBL's current layout: one ``_ibl_trials.table.pqt`` per session; here the shipped mouse SWC_054."""
    from learnrules.data import load_ibl_mouse

    mouse = load_ibl_mouse()
    first = mouse[mouse["session"] < 3]
    for date, block in first.groupby("date"):
        alf = tmp_path / "hoferlab" / "Subjects" / "SWC_054" / date / "001" / "alf"
        alf.mkdir(parents=True)
        block[list(ATTRIBUTES)].reset_index(drop=True).to_parquet(alf / "_ibl_trials.table.pqt")
    make_parquet_db(tmp_path, hash_files=True)
    _assert_same(load_one(open_one(tmp_path), "SWC_054"), load_trials(first))
