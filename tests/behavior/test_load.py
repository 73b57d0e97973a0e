import copy
import importlib.resources
import logging

import numpy as np
import pandas as pd
import pytest

from learnrules.behavior import TrialData, from_psytrack, load_psytrack_rat, load_trials, summarize


def ibl_frame() -> pd.DataFrame:
    """Two IBL mice; rows are hand-checked against the expected canonical codes below."""
    return pd.DataFrame({
        "subject": ["m1"] * 5 + ["m2"] * 3,
        "session": ["2024-01-02", "2024-01-02", "2024-01-01", "2024-01-01", "2024-01-01", "s", "s", "s"],
        "trial": [0, 1, 0, 1, 2, 0, 1, 2],
        "contrastLeft": [np.nan, 0.25, 0.0, np.nan, 1.0, np.nan, np.nan, 0.0],
        "contrastRight": [1.0, np.nan, np.nan, 0.0, np.nan, 0.125, 0.0, np.nan],
        "choice": [-1, 1, 0, -1, 1, 1, -1, 1],
        "feedbackType": [1, 1, -1, 1, 1, -1, -1, 1],
        "probabilityLeft": [0.5] * 8,
    })


def test_ibl_codes_map_exactly():
    data = load_trials(ibl_frame())
    assert data.choice_coding == "ibl"
    assert data.subjects == ("m1", "m2")
    assert data.n_nogo_dropped == 1
    m1 = data["m1"]
    # Sorted by session date: 2024-01-01 (rows 3, 4; row 2 is the no-go) then 2024-01-02 (rows 0, 1).
    np.testing.assert_array_equal(m1.session, [0, 0, 1, 1])
    np.testing.assert_array_equal(m1.trial, [1, 2, 0, 1])
    np.testing.assert_array_equal(m1.choice, [1, 0, 1, 0])
    np.testing.assert_array_equal(m1.reward, [1, 1, 1, 1])
    np.testing.assert_array_equal(m1.covariates["contrastLeft"], [0, 1, 0, 0.25])
    np.testing.assert_array_equal(m1.covariates["contrastRight"], [0, 0, 1, 0])
    # Row 3: zero contrast, rewarded right choice -> answer right; others from the contrast side.
    np.testing.assert_array_equal(m1.answer, [1, 0, 1, 0])
    m2 = data["m2"]
    np.testing.assert_array_equal(m2.choice, [0, 1, 0])
    np.testing.assert_array_equal(m2.reward, [0, 0, 1])
    # Row 6: zero contrast, unrewarded right choice -> the correct side was left.
    np.testing.assert_array_equal(m2.answer, [1, 0, 0])


def test_rewarded_trial_with_right_contrast_has_choice_right():
    data = load_trials(ibl_frame())
    frame = data.to_frame()
    rewarded_right = frame[(frame.reward == 1) & (frame.contrastRight > frame.contrastLeft)]
    rewarded_left = frame[(frame.reward == 1) & (frame.contrastLeft > frame.contrastRight)]
    assert len(rewarded_right) > 0 and len(rewarded_left) > 0
    assert (rewarded_right.choice == 1).all()
    assert (rewarded_left.choice == 0).all()


def test_flipped_ibl_sign_is_rejected():
    frame = ibl_frame()
    flipped = frame.assign(choice=-frame["choice"])
    with pytest.raises(ValueError, match="'choice'.*flipped"):
        load_trials(flipped)


def test_nogo_kept_as_missing():
    data = load_trials(ibl_frame(), nogo="missing")
    m1 = data["m1"]
    assert data.n_nogo_dropped == 0
    assert m1.n_trials == 5
    np.testing.assert_array_equal(np.isnan(m1.choice), [True, False, False, False, False])
    assert m1.reward[0] == 0
    assert np.isnan(m1.answer[0])  # zero contrast on both sides and no choice: correct side unknown
    assert summarize(data).set_index("subject").loc["m1", "n_missing"] == 1


def test_logs_detected_form(caplog):
    with caplog.at_level(logging.INFO, logger="learnrules.behavior"):
        load_trials(ibl_frame())
    assert "IBL ALF" in caplog.text
    assert "dropped 1 no-go" in caplog.text


def binary_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "subject": ["r"] * 4,
        "session": [1, 1, 2, 2],
        "choice": [1, 0, 0, 1],
        "feedbackType": [1, 0, 1, 1],
        "answer": [1, 1, 0, 1],
        "contrastLeft": [0.0, 0.0, 0.5, 0.0],
        "contrastRight": [0.5, 1.0, 0.0, 0.25],
    })


def test_binary_form_codes(caplog):
    with caplog.at_level(logging.INFO, logger="learnrules.behavior"):
        data = load_trials(binary_frame())
    assert "psytrack_learning" in caplog.text
    assert data.choice_coding == "binary"
    r = data["r"]
    np.testing.assert_array_equal(r.choice, [1, 0, 0, 1])
    np.testing.assert_array_equal(r.reward, [1, 0, 1, 1])
    np.testing.assert_array_equal(r.answer, [1, 1, 0, 1])
    np.testing.assert_array_equal(r.session, [0, 0, 1, 1])
    np.testing.assert_array_equal(r.trial, [0, 1, 0, 1])  # no trial column: file order within session


def test_binary_answer_in_psytrack_codes():
    frame = binary_frame().assign(answer=[2, 2, 1, 2])
    np.testing.assert_array_equal(load_trials(frame)["r"].answer, [1, 1, 0, 1])


def test_reward_column_and_default_subject():
    frame = pd.DataFrame({"choice": [1, 0, 1], "reward": [1, 1, 0]})
    data = load_trials(frame, default_subject="solo")
    assert data.subjects == ("solo",)
    np.testing.assert_array_equal(data["solo"].answer, [1, 0, 0])  # from feedback: unrewarded right -> left


def test_mapped_columns_and_stimulus_columns(caplog):
    frame = pd.DataFrame({
        "rat": ["x", "x", "x", "y", "y", "y"],
        "day": [3, 3, 7, 1, 1, 1],
        "resp": [-1, 1, -1, 1, 0, -1],
        "fb": [1, 1, -1, 1, -1, 1],
        "tone": [0.5, -0.5, 0.2, -1.0, 0.0, 1.0],
        "choice": ["junk"] * 6,  # an unmapped column with a canonical name is ignored when mapped over
    })
    with caplog.at_level(logging.INFO, logger="learnrules.behavior"):
        data = load_trials(frame, columns={"subject": "rat", "session": "day", "choice": "resp",
                                           "reward": "fb"}, stimulus_columns=["tone"])
    assert "mapped through `columns`" in caplog.text
    assert data.choice_coding == "ibl"
    np.testing.assert_array_equal(data["x"].choice, [1, 0, 1])
    np.testing.assert_array_equal(data["x"].session, [0, 0, 1])
    np.testing.assert_array_equal(data["x"].covariates["tone"], [0.5, -0.5, 0.2])
    np.testing.assert_array_equal(data["y"].choice, [0, 1])
    assert data.n_nogo_dropped == 1


def test_caller_frame_not_modified():
    frame = ibl_frame()
    frame["session"] = frame["session"].astype(object)
    before = copy.deepcopy(frame)
    load_trials(frame, nogo="missing")
    load_trials(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert frame["contrastLeft"].isna().sum() == before["contrastLeft"].isna().sum()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_file_round_trip(tmp_path, suffix):
    frame = ibl_frame()
    path = tmp_path / f"trials{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    from_file = load_trials(path)
    from_frame = load_trials(frame)
    pd.testing.assert_frame_equal(from_file.to_frame(), from_frame.to_frame())
    assert load_trials(str(path)).n_trials == 7


def test_canonical_frame_reloads(tmp_path):
    data = load_trials(ibl_frame())
    path = tmp_path / "canonical.csv"
    data.to_frame().to_csv(path, index=False)
    again = load_trials(path, columns={"reward": "reward"})
    for a, b in zip(data, again, strict=True):
        np.testing.assert_array_equal(a.choice, b.choice)
        np.testing.assert_array_equal(a.answer, b.answer)
        np.testing.assert_array_equal(a.session, b.session)


def test_psytrack_rat_dataset():
    path = importlib.resources.files("psytrack") / "examples" / "sampleRatData.npz"
    with importlib.resources.as_file(path) as p, np.load(p, allow_pickle=True) as archive:
        D = archive["D"].item()
    data = load_psytrack_rat()
    assert isinstance(data, TrialData)
    assert data.n_trials == 20_000
    rat = data.animals[0]
    assert rat.subject == "W053"
    assert rat.n_sessions == 80
    np.testing.assert_array_equal(rat.choice, D["y"] - 1)
    np.testing.assert_array_equal(rat.answer, D["answer"] - 1)
    np.testing.assert_array_equal(rat.reward, D["correct"])
    np.testing.assert_array_equal(np.bincount(rat.session), D["dayLength"])
    np.testing.assert_array_equal(rat.covariates["s1"], D["inputs"]["s1"][:, 0])
    assert {"s1", "s2", "s_avg"} <= set(rat.covariates)
    # The rat's rewarded trials chose the correct side (the sign convention holds).
    assert np.all(rat.choice[rat.reward == 1] == rat.answer[rat.reward == 1])


def test_rat_through_table_loader(tmp_path):
    rat = load_psytrack_rat().animals[0]
    frame = pd.DataFrame({"subject": rat.subject, "session": rat.session, "trial": rat.trial,
                          "choice": rat.choice, "reward": rat.reward, "answer": rat.answer,
                          "s1": rat.covariates["s1"], "s2": rat.covariates["s2"]})
    path = tmp_path / "rat.parquet"
    frame.to_parquet(path)
    data = load_trials(path, stimulus_columns=["s1", "s2"])
    assert data.n_trials == 20_000
    assert data.animals[0].n_sessions == 80
    np.testing.assert_array_equal(data.animals[0].choice, rat.choice)
    row = summarize(data).iloc[0]
    assert row["n_trials"] == 20_000 and row["n_sessions"] == 80
    assert row["accuracy"] == pytest.approx(rat.reward.mean())


def test_from_psytrack_small_dict_and_no_mutation():
    D = {"y": np.array([1.0, 2, 2, 1]), "answer": np.array([1, 2, 1, 1]), "dayLength": np.array([3, 0, 1]),
         "inputs": {"s1": np.array([[0.1, 0], [0.2, 0.1], [0.3, 0.2], [0.4, 0.3]]), "s2": np.ones(4)},
         "missing_trials": np.array([False, False, False, True])}
    before = copy.deepcopy(D)
    data = from_psytrack(D, subject="toy")
    animal = data["toy"]
    np.testing.assert_array_equal(animal.choice[:3], [0, 1, 1])
    assert np.isnan(animal.choice[3])
    np.testing.assert_array_equal(animal.reward, [1, 1, 0, 1])  # derived from y == answer
    np.testing.assert_array_equal(animal.session, [0, 0, 0, 1])
    np.testing.assert_array_equal(animal.covariates["s1"], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(D["y"], before["y"])
    np.testing.assert_array_equal(D["inputs"]["s1"], before["inputs"]["s1"])


def test_from_psytrack_zero_one_codes():
    D = {"y": [0, 1, 1], "correct": [1, 0, 1], "answer": [0, 0, 1]}
    animal = from_psytrack(D).animals[0]
    assert animal.subject == "psytrack"
    np.testing.assert_array_equal(animal.choice, [0, 1, 1])
    np.testing.assert_array_equal(animal.answer, [0, 0, 1])


@pytest.mark.parametrize(("D", "key"), [
    ({"y": [1, 2, 3], "correct": [1, 1, 1]}, "'y'"),
    ({"y": [1, 2, 2], "correct": [1, 2, 1]}, "'correct'"),
    ({"y": [1, 2, 2], "correct": [1, 0, 1], "dayLength": [2, 2]}, "'dayLength'"),
    ({"y": [1, 2, 2]}, "'correct'"),
    ({"answer": [1, 2]}, "'y'"),
    ({"y": [1, 2], "correct": [1, 0], "inputs": {"s1": np.ones((3, 2))}}, "'s1'"),
    ({"y": [1, 2], "correct": [1, 0], "inputs": {"s1": np.ones((2, 0))}}, "'s1'"),
    ({"y": [1, 2], "correct": [1, 0], "inputs": {"s1": [0.0, np.nan]}}, "column 's1', row 1"),
    ({"y": [1, 2], "correct": [1, 0], "missing_trials": [True]}, "'missing_trials'"),
    ({"y": [2, 1], "answer": [1, 2], "correct": [1, 1]}, "'choice'.*flipped"),
    ({"y": [1], "correct": [1]}, "'y'"),
])
def test_from_psytrack_errors(D, key):
    with pytest.raises(ValueError, match=key):
        from_psytrack(D)


def test_rat_loader_without_psytrack(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install learnrules\[test\]"):
        load_psytrack_rat()


def test_rows_are_positions_not_index_labels():
    frame = ibl_frame()
    frame.index = [70, 60, 50, 40, 30, 20, 10, 0]
    bad = frame.assign(contrastLeft=[np.nan, 0.25, 0.0, np.nan, 1.0, np.nan, 2.0, 0.0])
    with pytest.raises(ValueError, match=r"column 'contrastLeft', row 6: value 2.0"):
        load_trials(bad)
    pd.testing.assert_frame_equal(load_trials(frame).to_frame(), load_trials(ibl_frame()).to_frame())


def test_ambiguous_all_left_ibl_table_is_read_as_ibl():
    # Only +1 choices, all rewarded, left contrast: no -1 anywhere, yet only the IBL reading is consistent.
    frame = pd.DataFrame({"contrastLeft": [0.5, 1.0, 0.25], "contrastRight": [np.nan] * 3,
                          "choice": [1, 1, 1], "feedbackType": [1, 1, 1]})
    data = load_trials(frame)
    assert data.choice_coding == "ibl"
    np.testing.assert_array_equal(data.animals[0].choice, [0, 0, 0])
    with pytest.raises(ValueError, match="'choice'.*flipped"):
        load_trials(frame, coding="binary")


def test_flipped_binary_table_is_not_rescued_as_ibl():
    # The user's 1 = left: rewarded choice-0 trials rule out IBL's no-go reading, so this is an error.
    frame = pd.DataFrame({"contrastLeft": [0.5, 0.0, 1.0, 0.0], "contrastRight": [0.0, 0.5, 0.0, 1.0],
                          "choice": [1, 0, 1, 0], "reward": [1, 1, 1, 1]})
    with pytest.raises(ValueError, match=r"column 'choice', row 0: .*flipped \(binary"):
        load_trials(frame)
    assert load_trials(frame, coding="ibl").n_nogo_dropped == 2


def test_summarize_exact():
    table = summarize(load_trials(ibl_frame())).set_index("subject")
    assert list(table.columns) == ["n_trials", "n_sessions", "accuracy", "fraction_right", "n_missing"]
    assert table.loc["m1"].tolist() == [4, 2, 1.0, 0.5, 0]
    assert table.loc["m2", "accuracy"] == pytest.approx(1 / 3)
    assert table.loc["m2", "fraction_right"] == pytest.approx(1 / 3)
    assert table.loc["m2", "n_sessions"] == 1
