import numpy as np
import pandas as pd
import pytest

from learnrules.behavior import load_trials


def good() -> pd.DataFrame:
    return pd.DataFrame({
        "subject": ["a", "a", "a", "b", "b", "b"],
        "session": [0, 0, 1, 0, 0, 0],
        "trial": [0, 1, 0, 0, 1, 2],
        "contrastLeft": [0.5, np.nan, 0.0, np.nan, 1.0, 0.25],
        "contrastRight": [np.nan, 1.0, np.nan, 0.125, np.nan, np.nan],
        "choice": [1, -1, -1, -1, 1, 1],
        "feedbackType": [1, 1, -1, 1, 1, 1],
    })


def with_cell(column: str, row: int, value: object) -> pd.DataFrame:
    frame = good()
    values = frame[column].astype(object).tolist()
    values[row] = value
    return frame.assign(**{column: pd.Series(values, dtype=object)})


def test_good_table_loads():
    assert load_trials(good()).n_trials == 6


@pytest.mark.parametrize(("frame", "pattern"), [
    (good().drop(columns="choice"), r"missing required column\(s\) 'choice'; columns present: \['subject'"),
    (good().drop(columns="feedbackType"), r"'feedbackType' or 'reward'"),
    (good().drop(columns="contrastRight"), r"'contrastRight'"),
    (with_cell("choice", 4, "left"), r"column 'choice', row 4: value 'left' is not a number"),
    (with_cell("choice", 2, np.nan), r"column 'choice', row 2: value nan is missing"),
    (with_cell("choice", 2, None), r"column 'choice', row 2: .* is missing"),
    (with_cell("choice", 3, 2), r"column 'choice', row 3: value 2.0 is not one of the codes"),
    (with_cell("choice", 3, 0.5), r"column 'choice', row 3: value 0.5"),
    (with_cell("feedbackType", 1, 0), r"column 'feedbackType', row 1: value 0.0 is not one of the codes"),
    (with_cell("feedbackType", 5, "yes"), r"column 'feedbackType', row 5: value 'yes'"),
    (with_cell("contrastLeft", 5, 1.5), r"column 'contrastLeft', row 5: value 1.5 is outside \[0.0, 1.0\]"),
    (with_cell("contrastRight", 1, -0.1), r"column 'contrastRight', row 1: value -0.1 is outside"),
    (with_cell("contrastRight", 1, np.inf), r"column 'contrastRight', row 1: value inf"),
    (with_cell("trial", 4, 0), r"duplicate key \(subject='b', session=0, trial=0\) at rows \[3, 4\]"),
    (with_cell("trial", 5, 0.5), r"column 'trial', row 5: value 0.5 is not a whole number"),
    (with_cell("trial", 5, np.nan), r"column 'trial', row 5: value nan"),
    (with_cell("trial", 5, 1e300), r"column 'trial', row 5"),
    (with_cell("trial", 3, 7), r"column 'trial', row 4: value 1 comes after trial 7 \(row 3\)"),
    (with_cell("subject", 3, np.nan), r"column 'subject', row 3: value nan is missing"),
    (with_cell("session", 0, "x"), r"column 'session': values 'x', '0' of subject 'a' are neither numbers nor ISO"),
    (with_cell("session", 0, None), r"column 'session', row 0"),
    (good().iloc[:0], r"no rows; columns present"),
    (good().assign(choice=[1, -1, -1, 0, 0, 0], feedbackType=[1, 1, -1, -1, -1, -1]),
         r"column 'choice': subject\(s\) \['b'\] have only no-go"),
    (good().assign(choice=-good()["choice"]), r"column 'choice', row \d: .*flipped"),
])
def test_errors_name_column_row_and_value(frame, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_trials(frame)


def test_subject_with_one_trial():
    frame = good().assign(subject=["a", "a", "c", "b", "b", "b"])
    with pytest.raises(ValueError, match=r"column 'subject': subject 'c' has 1 trial\(s\) \(rows \[2\]\)"):
        load_trials(frame)


def test_unordered_trials_in_file_order_error():
    frame = good().iloc[[0, 1, 2, 5, 4, 3]]  # b's trials 2, 1, 0: decreasing
    with pytest.raises(ValueError, match=r"column 'trial', row 4: value 1 comes after trial 2 \(row 3\)"):
        load_trials(frame.reset_index(drop=True))


def test_mapping_errors():
    with pytest.raises(ValueError, match=r"unknown canonical column\(s\) \['resp'\]"):
        load_trials(good(), columns={"resp": "choice"})
    with pytest.raises(ValueError, match=r"missing required column\(s\) 'r'"):
        load_trials(good(), columns={"choice": "r"})
    with pytest.raises(ValueError, match=r"column 'tone', row 1"):
        load_trials(good().assign(tone=[0.0, np.nan, 1, 1, 1, 1]), stimulus_columns=["tone"])
    with pytest.raises(ValueError, match=r"stimulus column 'choice'"):
        load_trials(good(), stimulus_columns=["choice"])


def test_duplicate_column_names():
    frame = pd.concat([good(), good()[["choice"]]], axis=1)
    with pytest.raises(ValueError, match=r"duplicate column 'choice'"):
        load_trials(frame)


def test_answer_and_probability_codes():
    with pytest.raises(ValueError, match=r"column 'answer', row 1: value 3.0"):
        load_trials(good().assign(answer=[0, 3, 1, 1, 0, 0]))
    with pytest.raises(ValueError, match=r"column 'answer', row 0: value 0.0 .*psytrack"):
        load_trials(good().assign(answer=[0, 2, 1, 1, 0, 0]))
    with pytest.raises(ValueError, match=r"column 'probabilityLeft', row 2: value 1.2"):
        load_trials(good().assign(probabilityLeft=[0.5, 0.5, 1.2, 0.5, 0.5, 0.5]))


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_csv(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match="is empty: no columns.*'choice'"):
        load_trials(path)


def test_header_only_csv(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("subject,choice,feedbackType\n")
    with pytest.raises(ValueError, match=r"no rows; columns present: \['subject', 'choice', 'feedbackType'\]"):
        load_trials(path)


def test_garbled_files(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text('choice,feedbackType\n1,1\n"0,1\n')
    with pytest.raises(ValueError, match="cannot read"):
        load_trials(csv)
    parquet = tmp_path / "bad.parquet"
    parquet.write_bytes(b"not a parquet file")
    with pytest.raises(ValueError, match="cannot read"):
        load_trials(parquet)


def test_missing_file_and_bad_source(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trials(tmp_path / "nope.csv")
    with pytest.raises(TypeError):
        load_trials(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nogo"):
        load_trials(good(), nogo="keep")  # type: ignore[arg-type]
