"""Fuzz: random IBL tables from the schema, written to CSV and changed one way at a time.

Each change either keeps the table's meaning (the reading must then equal the original's) or makes it
unreadable or ambiguous (then ``learnrules fit`` must exit 2 with one line naming the column, and the row for a
bad cell). Never a traceback, never exit 0 with a different reading.
"""

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learnrules.behavior import load_trials
from learnrules.cli import main

CONTRASTS = [0.0, 0.0625, 0.25, 1.0]


@st.composite
def tables(draw) -> pd.DataFrame:
    """Valid IBL tables: 1-3 mice x 3-8 trials over sessions 0-3; the first two trials of each are choices."""
    records = []
    for s in range(draw(st.integers(1, 3))):
        n = draw(st.integers(3, 8))
        sessions = sorted(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
        for i in range(n):
            contrast, right = draw(st.sampled_from(CONTRASTS)), draw(st.booleans())
            choice = draw(st.sampled_from([-1, 1, 0] if i >= 2 else [-1, 1]))
            feedback = -1 if choice == 0 else (draw(st.sampled_from([-1, 1])) if contrast == 0
                                               else (1 if (choice == -1) == right else -1))
            records.append({"subject": f"m{s}", "session": sessions[i], "trial": i,
                            "contrastLeft": np.nan if right else contrast,
                            "contrastRight": contrast if right else np.nan, "choice": choice,
                            "feedbackType": feedback})
    return pd.DataFrame.from_records(records)


def read(frame: pd.DataFrame, path) -> pd.DataFrame | None:
    frame.to_csv(path, index=False)
    return load_trials(path).to_frame()


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


VARIANTS = {"subject": "Subject", "session": " SESSION ", "trial": "Trial", "choice": "Choice",
            "feedbackType": "feedback_type", "contrastLeft": "contrast_left", "contrastRight": "ContrastRight"}


def _binary_evidence(animal: pd.DataFrame) -> bool:
    """Whether a 0/1-coded animal shows it (an unrewarded trial, or a rewarded choice 0) or a checkable side."""
    known = (animal["contrastLeft"].fillna(0) != animal["contrastRight"].fillna(0)) & (animal["feedbackType"] == 1)
    return bool((animal["feedbackType"] == 0).any() or ((animal["choice"] == 0) & (animal["feedbackType"] == 1)).any()
                or known.any())


@given(frame=tables(), change=st.sampled_from(["header", "subject digits", "ISO dates", "US dates", "shuffle",
                                               "one animal in 0/1 codes"]), pick=st.integers(0, 10 ** 6))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_change_keeps_the_reading_or_is_refused(frame, change, pick, tmp_path):
    original = read(frame, tmp_path / "a.csv")
    subjects = list(dict.fromkeys(frame["subject"]))
    if change == "header":
        column = sorted(VARIANTS)[pick % len(VARIANTS)]
        same(read(frame.rename(columns={column: VARIANTS[column]}), tmp_path / "b.csv"), original)
    elif change == "subject digits":
        names = {s: "0" * i + "1" for i, s in enumerate(subjects)}  # 1, 01, 001: three animals
        got = read(frame.assign(subject=frame["subject"].map(names)), tmp_path / "b.csv")
        same(got, original.assign(subject=original["subject"].map(names)))
    elif change == "ISO dates":
        same(read(frame.assign(session=frame["session"].map(lambda s: f"2019-01-{9 + s:02d}")), tmp_path / "b.csv"),
             original)
    elif change == "US dates":
        dated = frame.assign(session=frame["session"].map(lambda s: f"01/{9 + s:02d}/2019"))
        several = frame.groupby("subject")["session"].nunique().max() > 1
        if several:
            with pytest.raises(ValueError, match=r"column 'session': value '01/\d\d/2019' of subject 'm\d' is a date "
                                                 r"in an ambiguous format"):
                read(dated, tmp_path / "b.csv")
        else:
            same(read(dated, tmp_path / "b.csv"), original)
    elif change == "shuffle":
        order = np.random.default_rng(pick).permutation(len(frame))
        try:  # trials out of order within a session are refused; otherwise the animals may come in another order
            got = read(frame.iloc[order], tmp_path / "b.csv")
        except ValueError as err:
            assert re.match(r"column 'trial', row \d+: value \d+ comes after trial \d+", str(err)), str(err)
        else:
            same(got.sort_values("subject", kind="stable"), original.sort_values("subject", kind="stable"))
    elif len(subjects) > 1:  # one animal in 0/1 codes beside IBL animals
        name = subjects[pick % len(subjects)]
        mine = (frame["subject"] == name) & (frame["choice"] != 0)
        mixed = frame[(frame["subject"] != name) | mine].copy()
        mixed.loc[mine, "choice"] = np.where(frame.loc[mine, "choice"] == -1, 1, 0)
        mixed.loc[mine, "feedbackType"] = (frame.loc[mine, "feedbackType"] + 1) // 2
        if mixed.loc[mixed["subject"] != name, "choice"].eq(-1).any() or \
                mixed.loc[mixed["subject"] != name, "feedbackType"].eq(-1).any():
            if _binary_evidence(mixed[mixed["subject"] == name]):
                with pytest.raises(ValueError, match=r"column '(choice|feedbackType)'"):
                    read(mixed, tmp_path / "b.csv")


BAD_CELLS = {"choice": ["x", 2, 0.5, ""], "feedbackType": ["yes", 0.5, 3], "contrastLeft": [1.5, -1, "high"],
             "contrastRight": [2, "?"], "trial": [0.5, "t"]}


@given(frame=tables(), column=st.sampled_from(sorted(BAD_CELLS)), pick=st.integers(0, 10 ** 6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_bad_cell_exits_2_with_one_line_naming_column_and_row(frame, column, pick, tmp_path, capsys):
    row = pick % len(frame)
    value = BAD_CELLS[column][pick % len(BAD_CELLS[column])]
    values = frame[column].astype(object).tolist()
    values[row] = value
    path = tmp_path / "bad.csv"
    frame.assign(**{column: pd.Series(values, dtype=object)}).to_csv(path, index=False)
    code = main(["fit", str(path), "--rule", "zero", "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    message = err.strip()
    assert re.search(rf"column '{column}', row {row}: value ", message) or (
        value == "" and f"column '{column}', row {row}: value nan is missing" in message), message
    assert not (tmp_path / "out").exists()
