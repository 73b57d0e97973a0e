"""Property-based test: malformed tables only ever raise a ValueError that names a column."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from learnrules.behavior import load_trials

CONTRASTS = [0.0, 0.0625, 0.125, 0.25, 1.0]
COLUMNS = ["subject", "session", "trial", "contrastLeft", "contrastRight", "choice", "feedbackType"]


@st.composite
def ibl_tables(draw) -> pd.DataFrame:
    """Valid IBL tables: 1-3 mice, each with at least 2 non-no-go trials, consistent feedback."""
    records = []
    for s in range(draw(st.integers(1, 3))):
        n = draw(st.integers(2, 8))
        sessions = sorted(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
        trial = 0
        for i in range(n):
            trial += draw(st.integers(1, 3))
            contrast = draw(st.sampled_from(CONTRASTS))
            right = draw(st.booleans())
            choice = draw(st.sampled_from([-1, 1, 0])) if i >= 2 else draw(st.sampled_from([-1, 1]))
            correct = (choice == -1) == right
            if choice == 0:
                feedback = -1
            elif contrast == 0:
                feedback = draw(st.sampled_from([-1, 1]))
            else:
                feedback = 1 if correct else -1
            records.append({"subject": f"m{s}", "session": sessions[i], "trial": trial,
                            "contrastLeft": np.nan if right else contrast,
                            "contrastRight": contrast if right else np.nan,
                            "choice": choice, "feedbackType": feedback})
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def set_cell(frame: pd.DataFrame, column: str, row: int, value: object) -> pd.DataFrame:
    values = frame[column].astype(object).tolist()
    values[row] = value
    return frame.assign(**{column: pd.Series(values, dtype=object)})


@st.composite
def malformed(draw) -> tuple[pd.DataFrame, str, bool]:
    """Return ``(table, column, must_fail)``: a mutated valid table and the column the mutation touched."""
    frame = draw(ibl_tables())
    row = draw(st.integers(0, len(frame) - 1))
    kind = draw(st.sampled_from(["drop", "nan", "string", "code", "contrast", "duplicate", "shuffle"]))
    if kind == "drop":
        column = draw(st.sampled_from(["choice", "feedbackType", "contrastLeft", "contrastRight"]))
        return frame.drop(columns=column), column, True
    if kind == "nan":
        column = draw(st.sampled_from(["choice", "feedbackType", "subject", "session", "trial"]))
        return set_cell(frame, column, row, draw(st.sampled_from([np.nan, None]))), column, True
    if kind == "string":
        column = draw(st.sampled_from(["choice", "feedbackType", "contrastLeft", "contrastRight", "trial"]))
        value = draw(st.sampled_from(["left", "", "1,0", "nan?", "[1]"]))
        return set_cell(frame, column, row, value), column, True
    if kind == "code":
        column = draw(st.sampled_from(["choice", "feedbackType"]))
        return set_cell(frame, column, row, draw(st.sampled_from([2, -2, 0.5, 3.0, np.inf]))), column, True
    if kind == "contrast":
        column = draw(st.sampled_from(["contrastLeft", "contrastRight"]))
        return set_cell(frame, column, row, draw(st.sampled_from([-0.5, 1.5, np.inf, -np.inf]))), column, True
    if kind == "duplicate":
        other = draw(st.integers(0, len(frame) - 1).filter(lambda i: i != row))
        keys = ["subject", "session", "trial"]
        copied = frame.copy()
        copied.loc[other, keys] = frame.loc[row, keys].to_numpy()
        return copied, "trial", True
    order = draw(st.permutations(range(len(frame))))
    return frame.iloc[list(order)].reset_index(drop=True), "trial", False


@given(case=malformed())
@settings(max_examples=200, deadline=None)
def test_malformed_tables_raise_value_error_naming_a_column(case):
    frame, column, must_fail = case
    try:
        data = load_trials(frame)
    except ValueError as err:
        message = str(err)
        assert any(f"'{name}'" in message for name in COLUMNS), message
        if must_fail:
            # The mutated column is named, or a key column when the mutation broke the keys or a subject.
            named = [f"'{column}'", "'subject'", "'trial'"] if column != "choice" else ["'choice'", "'subject'"]
            assert any(n in message for n in named), (column, message)
        return
    assert not must_fail, f"mutation of {column!r} loaded without error"
    assert data.n_trials <= len(frame)


@given(frame=ibl_tables())
@settings(max_examples=50, deadline=None)
def test_valid_tables_load_with_exact_counts(frame):
    data = load_trials(frame)
    n_nogo = int((frame["choice"] == 0).sum())
    assert data.n_nogo_dropped == n_nogo
    assert data.n_trials == len(frame) - n_nogo
    rewarded = data.to_frame().query("reward == 1")
    side = np.sign(rewarded["contrastRight"] - rewarded["contrastLeft"])
    assert ((side == 0) | (side == 2 * rewarded["choice"] - 1)).all()
