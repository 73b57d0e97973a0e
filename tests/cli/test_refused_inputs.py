"""Bad input, one kind per case: exit 2 with one line naming the column, row and value (or the option), or a
correct reading. ``docs/guide/refused_inputs.md`` lists the same refusals for users.

Each case edits a small valid table (2 animals x 2 sessions x 4 trials, 0/1 coding) or passes one bad option,
and runs ``learnrules.cli.main`` in-process; every refusal happens before any fit, so a case takes milliseconds.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnrules.behavior import load_trials
from learnrules.cli import main

N = 16  # rows of the base table


def base() -> pd.DataFrame:
    """Two animals ``a``, ``b`` x sessions 1, 2 x 4 trials; rewarded exactly when the choice is correct."""
    answer = np.array([1, 0, 1, 0] * 4)
    choice = np.array([1, 0, 0, 0, 1, 1, 1, 0] * 2)
    return pd.DataFrame({
        "subject": ["a"] * 8 + ["b"] * 8, "session": [1] * 4 + [2] * 4 + [1] * 4 + [2] * 4,
        "trial": list(range(4)) * 4, "contrastLeft": np.where(answer == 0, 0.5, 0.0),
        "contrastRight": np.where(answer == 1, 0.5, 0.0), "choice": choice, "reward": (choice == answer).astype(int)})


def cell(column: str, row: int, value: object):
    def edit(t: pd.DataFrame) -> pd.DataFrame:
        values = t[column].astype(object).tolist()
        values[row] = value
        return t.assign(**{column: pd.Series(values, dtype=object)})
    return edit


def rename(**names: str):
    return lambda t: t.rename(columns=names)


def assign(**columns: object):
    return lambda t: t.assign(**columns)


def ibl_b(t: pd.DataFrame) -> pd.DataFrame:
    """Animal b in IBL codes (choice -1 = right, +1 = left; feedback -1/+1), animal a left in 0/1 codes."""
    b = t["subject"] == "b"
    return t.assign(choice=np.where(b, np.where(t["choice"] == 1, -1, 1), t["choice"]),
                    reward=np.where(b, 2 * t["reward"] - 1, t["reward"]))


def text(csv: str):
    return csv  # raw file content instead of an edit


# name -> (edit of base() or raw CSV text, regular expression the whole one-line message must match)
TABLE_CASES = {
    # columns
    "missing choice": (lambda t: t.drop(columns="choice"), r"missing required column\(s\) 'choice'; columns present"),
    "missing reward": (lambda t: t.drop(columns="reward"), r"missing required column\(s\) 'feedbackType' or 'reward'"),
    "duplicate column": (text("subject,choice,reward,choice\na,1,1,0\na,0,1,0\n"), r"duplicate column 'choice'"),
    "two columns read as one": (text("subject,Subject,choice,reward\na,a,1,1\na,a,0,1\n"),
                                r"columns 'subject' and 'Subject' both read as column 'subject'"),
    "misspelt subject": (rename(subject="subjects"), r"no column 'subject', but a column 'subjects': rename it"),
    "misspelt session": (rename(session="sesion"), r"no column 'session', but a column 'sesion'"),
    "misspelt choice": (rename(choice="choices"), r"no column 'choice', but a column 'choices'"),
    "misspelt trial": (rename(trial="trail"), r"no column 'trial', but a column 'trail'"),
    "misspelt feedback": (lambda t: t.rename(columns={"reward": "feedback"}),
                          r"no column 'feedbackType', but a column 'feedback'"),
    "one contrast column": (lambda t: t.drop(columns="contrastRight"), r"missing required column\(s\) 'contrastRight'"),
    # choice
    "choice not a number": (cell("choice", 3, "left"), r"column 'choice', row 3: value 'left' is not a number"),
    "choice missing": (cell("choice", 2, np.nan), r"column 'choice', row 2: value nan is missing \(1 missing in all\)"),
    "choice code 3": (cell("choice", 4, 3),
                      r"column 'choice', row 4: value 3\.0 is not one of the codes \[0\.0, 1\.0\]"),
    "choice 0.5": (cell("choice", 5, 0.5), r"column 'choice', row 5: value 0\.5 is not one of the codes"),
    "choice infinite": (cell("choice", 6, np.inf), r"column 'choice', row 6: value inf is not one of the codes"),
    "choice flipped": (assign(choice=lambda t: 1 - t["choice"], reward=lambda t: t["reward"]),
                       r"column 'choice', row \d+: value '(left|right)' contradicts the correct side on a rewarded"),
    "mixed codings": (ibl_b, r"column 'choice': animals 'b' use IBL codes .* and animals 'a' use 0/1 codes"),
    "IBL animal with only no-go": (lambda t: ibl_b(t).assign(
        choice=lambda u: np.where(u["subject"] == "b", 0, u["choice"]),
        reward=lambda u: np.where(u["subject"] == "b", -1, 2 * u["reward"] - 1)).assign(
        choice=lambda u: np.where(u["subject"] == "a", np.where(u["choice"] == 1, -1, 1), u["choice"])),
        r"column 'choice': subject\(s\) \['b'\] have only no-go trials"),
    # reward
    "reward code 7": (cell("reward", 5, 7),
                      r"column 'reward', row 5: value 7\.0 is not one of the codes \[0\.0, 1\.0\]"),
    "reward missing": (cell("reward", 1, np.nan), r"column 'reward', row 1: value nan is missing"),
    "reward text": (cell("reward", 0, "yes"), r"column 'reward', row 0: value 'yes' is not a number"),
    "reward -1 and 0 in one animal": (lambda t: t[t["subject"] == "a"].assign(reward=[1, -1, 0, 1, 1, 1, -1, 1]),
                                      r"column 'reward', row 2: value 0\.0 is not one of the codes \[-1\.0, 1\.0\]"),
    # stimuli
    "contrast above 1": (cell("contrastLeft", 1, 1.5),
                         r"column 'contrastLeft', row 1: value 1\.5 is outside \[0\.0, 1\.0\]"),
    "negative contrast": (cell("contrastRight", 0, -0.2), r"column 'contrastRight', row 0: value -0\.2 is outside"),
    "contrast text": (cell("contrastLeft", 3, "high"), r"column 'contrastLeft', row 3: value 'high' is not a number"),
    "contrast infinite": (cell("contrastRight", 2, np.inf), r"column 'contrastRight', row 2: value inf is outside"),
    "probabilityLeft above 1": (assign(probabilityLeft=[0.5] * 15 + [2.0]),
                                r"column 'probabilityLeft', row 15: value 2\.0 is outside \[0\.0, 1\.0\]"),
    "answer code 3": (assign(answer=[1, 0, 1, 0] * 3 + [1, 0, 1, 3]),
                      r"column 'answer', row 15: value 3\.0 is not one"),
    "answer 0 and 2": (assign(answer=[2, 0, 2, 0] * 4),
                       r"column 'answer', row 1: value 0\.0 is not one of the codes \[1\.0, 2\.0\]"),
    # trial
    "trial not whole": (cell("trial", 5, 0.5), r"column 'trial', row 5: value 0\.5 is not a whole number"),
    "trial missing": (cell("trial", 5, np.nan), r"column 'trial', row 5: value nan is not a whole number"),
    "trial text": (cell("trial", 2, "x"), r"column 'trial', row 2: value 'x' is not a number"),
    "trial huge": (cell("trial", 3, 1e300), r"column 'trial', row 3: value 1e\+300 is not a whole number"),
    "trial duplicate": (cell("trial", 1, 0), r"columns 'subject', 'session', 'trial': duplicate key \(subject='a', "
                                            r"session='1', trial=0\) at rows \[0, 1\]"),
    "trial decreasing": (cell("trial", 2, 7),
                         r"column 'trial', row 3: value 3 comes after trial 7 \(row 2\) in subject "
                                             r"'a', session '1'"),
    # subject
    "subject missing": (cell("subject", 3, np.nan), r"column 'subject', row 3: value nan is missing"),
    "subject with one trial": (lambda t: pd.concat([t, t.iloc[[0]].assign(subject="c")]),
                               r"column 'subject': subject 'c' has 1 trial\(s\) \(rows \[16\]\)"),
    # session
    "session missing": (cell("session", 4, None), r"column 'session', row 4: value nan is missing"),
    "session US date": (assign(session=(["12/30/2018"] * 4 + ["01/02/2019"] * 4) * 2),
                        r"column 'session': value '12/30/2018' of subject 'a' is a date in an ambiguous format"),
    "session dotted date": (assign(session=["30.12.2018"] * 4 + ["02.01.2019"] * 4 + ["30.12.2018"] * 8),
                            r"column 'session': value '30\.12\.2018' of subject 'a' is a date in an ambiguous format"),
    "session date without zeros": (assign(session=["2019-1-9"] * 4 + ["2019-1-10"] * 4 + ["2019-1-9"] * 8),
                                   r"column 'session': value '2019-1-9' of subject 'a' is a date in an ambiguous"),
    "session text labels": (assign(session=["pre"] * 4 + ["post"] * 4 + ["pre"] * 8),
                            r"column 'session': values 'pre', 'post' of subject 'a' are neither numbers nor ISO dates"),
    "session 1 and 01": (assign(session=["1"] * 4 + ["01"] * 4 + ["1"] * 8),
                         r"column 'session': values '1' and '01' of subject 'a' are the same number 1"),
    "date differs within a session": (assign(date=["2019-01-01"] * 3 + ["2019-01-05"] + ["2019-01-02"] * 4
                                             + ["2019-01-01"] * 4 + ["2019-01-02"] * 4),
                                      r"column 'date', row 3: value '2019-01-05' differs from the date of session '1'"),
    "date non-ISO": (assign(date=["1/2/2019"] * 4 + ["2/1/2019"] * 4 + ["1/2/2019"] * 4 + ["2/1/2019"] * 4),
                     r"column 'date': value '1/2/2019' of subject 'a' is a date in an ambiguous format"),
    # files
    "empty file": (text(""), r"'.*bad\.csv' is empty: no columns to read"),
    "header only": (text("subject,session,trial,choice,reward\n"), r"the trial table has no rows; columns present"),
    "garbage": (text("\x00\x01garbage,\n\"unterminated"), r"cannot read '.*bad\.csv' as a trial table"),
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit through the one-line parser.error
        code = exc.code
    return code, capsys.readouterr().err


def _one_line(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("learnrules: error: "), lines[0]
    assert re.search(pattern, lines[0]), (pattern, lines[0])


def _write(case: object, path: Path) -> None:
    if isinstance(case, str):
        path.write_text(case)
    else:
        case(base()).to_csv(path, index=False)


@pytest.mark.parametrize("name", list(TABLE_CASES))
def test_bad_table_is_refused_with_one_line_naming_it(name, tmp_path, capsys):
    case, pattern = TABLE_CASES[name]
    path = tmp_path / "bad.csv"
    _write(case, path)
    code, err = _run(["fit", str(path), "--rule", "zero", "--out", str(tmp_path / "out"), "-q"], capsys)
    _one_line(code, err, pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # no output, temporary folder or lock left


def _folder(tmp_path: Path) -> str:
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "summary.json").write_text("{}")
    return str(tmp_path / "existing")


def _file(tmp_path: Path) -> str:
    (tmp_path / "afile").write_text("x")
    return str(tmp_path / "afile")


def _data_folder(tmp_path: Path) -> str:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "trials.csv").write_text("precious")
    return str(tmp_path / "data")


def _one_session(tmp_path: Path) -> str:
    base().assign(session=1, trial=list(range(8)) * 2).to_csv(tmp_path / "one_session.csv", index=False)
    return str(tmp_path / "one_session.csv")


# name -> (arguments after the command, with {good}, {out}, {folder}, {file}, {one}; the message's pattern)
OPTION_CASES = {
    "folds 1": (["fit", "{good}", "--heldout", "--folds", "1", "--out", "{out}"],
                r"argument --folds: must be an integer >= 2, got '1'"),
    "folds text": (["compare", "{good}", "--folds", "five", "--out", "{out}"],
                   r"argument --folds: must be an integer >= 2, got 'five'"),
    "compare folds 1": (["compare", "{good}", "--folds", "1", "--out", "{out}"],
                        r"argument --folds: must be an integer"),
    "held-out sessions of single-session animals": (
        ["fit", "{one}", "--rule", "zero", "--heldout", "--folds", "2", "--out", "{out}"],
        r"held-out sessions: animal\(s\) 'a', 'b' have one session only"),
    "more session folds than sessions": (
        ["fit", "{good}", "--rule", "zero", "--heldout", "--folds", "5", "--out", "{out}"],
        r"--folds 5: no animal has more than 2 sessions, so 3 of the 5 folds would hold out nothing"),
    "compare sessions of single-session animals": (
        ["compare", "{one}", "--rules", "zero", "--scheme", "sessions", "--folds", "2", "--out", "{out}"],
        r"held-out sessions: animal\(s\) 'a', 'b' have one session only"),
    "more animal folds than animals": (["compare", "{good}", "--rules", "zero", "--folds", "3", "--out", "{out}"],
                                       r"k must be between 2 and the number of animals \(2\), got 3"),
    "sigma nan": (["simulate", "--sigma", "nan", "--out", "{out}.csv"],
                  r"argument --sigma: must be a finite number >= 0, got 'nan'"),
    "sigma negative": (["simulate", "--sigma", "-1", "--out", "{out}.csv"],
                       r"argument --sigma: must be a finite number"),
    "sigma infinite": (["simulate", "--sigma", "inf", "--out", "{out}.csv"], r"argument --sigma: .* got 'inf'"),
    "animals 0": (["simulate", "--animals", "0", "--out", "{out}.csv"],
                  r"argument --animals: must be a positive integer"),
    "seed negative": (["fit", "{good}", "--seed", "-1", "--out", "{out}"],
                      r"argument --seed: must be an integer in \[0, 2\*\*32\), got '-1'"),
    "seed not whole": (["fit", "{good}", "--seed", "1.5", "--out", "{out}"], r"argument --seed: .* got '1\.5'"),
    "budget 0": (["fit", "{good}", "--rule", "mlp", "--budget", "0", "--out", "{out}"],
                 r"argument --budget: must be a positive finite number, got '0'"),
    "budget nan": (["fit", "{good}", "--rule", "mlp", "--budget", "nan", "--out", "{out}"], r"--budget: .* got 'nan'"),
    "draws 0": (["fit", "{good}", "--draws", "0", "--out", "{out}"], r"argument --draws: must be a positive integer"),
    "max-steps negative": (["fit", "{good}", "--max-steps", "-3", "--out", "{out}"], r"argument --max-steps: .* '-3'"),
    "restarts text": (["fit", "{good}", "--rule", "mlp", "--restarts", "x", "--out", "{out}"],
                      r"argument --restarts: must be a positive integer, got 'x'"),
    "unknown coding": (["fit", "{good}", "--coding", "signed", "--out", "{out}"],
                       r"argument --coding: invalid choice: 'signed'"),
    "unknown session order": (["fit", "{good}", "--session-order", "alpha", "--out", "{out}"],
                              r"argument --session-order: invalid choice: 'alpha'"),
    "existing out": (["fit", "{good}", "--rule", "zero", "--out", "{folder}"],
                     r"--out '.*existing' already exists; pass --overwrite to replace it whole"),
    "out is a file": (["fit", "{good}", "--rule", "zero", "--overwrite", "--out", "{file}"],
                      r"--out '.*afile' is an existing file, not a folder"),
    "out below a file": (["fit", "{good}", "--rule", "zero", "--out", "{file}/out"],
                         r"'.*afile' is a file, not a folder"),
    "overwrite a folder that is not an output": (["fit", "{good}", "--rule", "zero", "--overwrite", "--out", "{data}"],
                                                 r"--out '.*data' is not an output folder of learnrules \(no summary"),
    "network width for a parametric rule": (["fit", "{good}", "--rule", "zero", "--hidden", "8", "--out", "{out}"],
                                            r"--hidden set the network of an mlp, gru or hybrid rule .*; 'zero' has"),
    "rollout for parametric rules": (["compare", "{good}", "--rules", "zero,delta", "--method", "rollout", "--folds",
                                      "2", "--out", "{out}"], r"--method rollout set the network .*'zero', 'delta'"),
    "restarts for a parametric rule": (["recover", "--rule", "delta", "--restarts", "3", "--out", "{out}"],
                                       r"--restarts set the network"),
    "compare into existing out": (["compare", "{good}", "--rules", "zero", "--folds", "2", "--out", "{folder}"],
                                  r"already exists; pass --overwrite"),
    "recover into existing out": (["recover", "--rule", "zero", "--out", "{folder}"],
                                  r"already exists; pass --overwrite"),
}


@pytest.mark.parametrize("name", list(OPTION_CASES))
def test_bad_option_is_refused_before_any_work(name, tmp_path, capsys):
    args, pattern = OPTION_CASES[name]
    good = tmp_path / "good.csv"
    base().to_csv(good, index=False)
    fill = {"good": str(good), "out": str(tmp_path / "out"), "folder": _folder(tmp_path), "file": _file(tmp_path),
            "one": _one_session(tmp_path), "data": _data_folder(tmp_path)}
    code, err = _run([a.format(**fill) for a in args] + ["-q"], capsys)
    _one_line(code, err, pattern)
    assert not (tmp_path / "out").exists() and (tmp_path / "existing" / "summary.json").read_text() == "{}"
    assert (tmp_path / "data" / "trials.csv").read_text() == "precious"
    assert not list(tmp_path.glob(".*"))  # no temporary folder, no lock


def _csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(tmp_path / "t.csv", index=False)
    return tmp_path / "t.csv"


def _sessions(data, subject: str) -> list[int]:
    return data[subject].session.tolist()


# name -> (table, load_trials keywords, check of the TrialData): inputs that are read, and read as meant
READING_CASES = {
    "capital Subject header": (rename(subject="Subject"), {}, lambda d: d.subjects == ("a", "b")),
    "spaced header": (rename(choice=" Choice "), {}, lambda d: d["a"].choice.tolist()[:4] == [1, 0, 0, 0]),
    "feedback_type": (lambda t: t.assign(choice=np.where(t["choice"] == 1, -1, 1), reward=2 * t["reward"] - 1)
                      .rename(columns={"reward": "feedback_type"}), {},
                      lambda d: d.choice_coding == "ibl" and d["a"].choice.tolist()[:4] == [1, 0, 0, 0]),
    "subjects 1 and 01": (assign(subject=["1"] * 8 + ["01"] * 8), {}, lambda d: d.subjects == ("1", "01")),
    "numeric sessions as text": (assign(session=["9"] * 4 + ["10"] * 4 + ["9"] * 4 + ["10"] * 4),
                                 {"session_order": "auto"}, lambda d: _sessions(d, "a") == [0] * 4 + [1] * 4),
    "sessions 10 before 9 in the file": (assign(session=(["10"] * 4 + ["9"] * 4) * 2), {},
                                         lambda d: _sessions(d, "a") == [0] * 4 + [1] * 4
                                         and d["a"].choice.tolist()[:4] == [1, 1, 1, 0]),
    "ISO dates": (assign(session=(["2019-01-10"] * 4 + ["2019-01-09"] * 4) * 2), {},
                  lambda d: d["a"].choice.tolist()[:4] == [1, 1, 1, 0]),
    "date column orders sessions": (assign(session=[2] * 4 + [1] * 4 + [1] * 4 + [2] * 4,
                                           date=["2019-01-01"] * 4 + ["2019-01-05"] * 4 + ["2019-01-01"] * 4
                                           + ["2019-01-02"] * 4), {},
                                    lambda d: d["a"].choice.tolist()[:4] == [1, 0, 0, 0]),
    "text sessions in file order": (assign(session=(["pre"] * 4 + ["post"] * 4) * 2),
                                    {"session_order": "file"}, lambda d: _sessions(d, "a") == [0] * 4 + [1] * 4),
    "US dates in file order": (assign(session=(["12/30/2018"] * 4 + ["01/02/2019"] * 4) * 2),
                               {"session_order": "file"}, lambda d: d["a"].choice.tolist()[:4] == [1, 0, 0, 0]),
    "stated coding reads a binary-looking IBL animal": (
        lambda t: ibl_b(t).assign(choice=lambda u: np.where(u["subject"] == "a", np.where(u["choice"] == 1, -1, 1),
                                                            u["choice"]),
                                  reward=lambda u: np.where(u["subject"] == "a", 2 * u["reward"] - 1, u["reward"])),
        {"coding": "ibl"}, lambda d: d.choice_coding == "ibl" and d["b"].choice.tolist()[:4] == [1, 0, 0, 0]),
}


@pytest.mark.parametrize("name", list(READING_CASES))
def test_unusual_table_is_read_as_meant(name, tmp_path):
    edit, kwargs, check = READING_CASES[name]
    assert check(load_trials(_csv(tmp_path, edit(base())), **kwargs))


def test_the_table_has_at_least_60_kinds_of_bad_input():
    assert len(TABLE_CASES) + len(OPTION_CASES) + len(READING_CASES) >= 60
