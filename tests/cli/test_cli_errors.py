"""Bad input through the command line: one line on stderr, exit code 2, never a traceback.

Most cases call ``learnrules.cli.main`` in-process (a subprocess costs seconds of imports each); one runs the
installed console script to show the real entry point behaves the same.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnrules.cli import main

ROWS = 6


def good_table() -> pd.DataFrame:
    """Two animals x 6 trials in 0/1 coding; rewarded exactly when the choice matches the answer."""
    answer = np.array([1, 0, 1, 1, 0, 0] * 2)
    choice = np.array([1, 0, 0, 1, 1, 0] * 2)
    return pd.DataFrame({
        "subject": ["a"] * ROWS + ["b"] * ROWS, "session": [0] * 2 * ROWS, "trial": list(range(ROWS)) * 2,
        "contrastLeft": np.where(answer == 0, 0.5, 0.0), "contrastRight": np.where(answer == 1, 0.5, 0.0),
        "answer": answer, "choice": choice, "reward": (choice == answer).astype(int)})


def _set(column: str, row: int, value: object):
    def edit(t: pd.DataFrame) -> pd.DataFrame:
        t = t.astype({column: object}) if isinstance(value, str) else t
        t.loc[row, column] = value
        return t
    return edit


# name -> (edit of the good table, or raw file text, words the one-line message must contain)
TABLE_CASES = {
    "missing column": (lambda t: t.drop(columns="choice"), ["choice"]),
    "non-numeric choice": (_set("choice", 3, "left"), ["choice"]),
    "NaN choice": (_set("choice", 2, np.nan), ["choice"]),
    "bad choice code": (_set("choice", 4, 3), ["choice", "3"]),
    "contrast above 1": (_set("contrastRight", 0, 1.5), ["contrastRight", "1.5"]),
    "negative contrast": (_set("contrastLeft", 1, -0.2), ["contrastLeft"]),
    "duplicate keys": (lambda t: t.assign(trial=[0, 0, 2, 3, 4, 5] * 2), ["duplicate"]),
    "unordered trials": (lambda t: t.assign(trial=[0, 1, 2, 5, 4, 3] * 2), ["trial"]),
    "subject with one trial": (lambda t: t.iloc[:ROWS + 1], ["b"]),
    "bad reward code": (_set("reward", 5, 7), ["reward"]),
}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def _assert_one_line_error(code: int, err: str, words: list[str]) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("learnrules: error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_malformed_table_gives_one_line_and_exit_2(case, tmp_path, capsys):
    edit, words = TABLE_CASES[case]
    path = tmp_path / "bad.csv"
    edit(good_table()).to_csv(path, index=False)
    code, err = _run(["fit", str(path), "--rule", "zero", "--out", str(tmp_path / "out"), "-q"], capsys)
    _assert_one_line_error(code, err, words)
    assert not (tmp_path / "out").exists()  # nothing written for bad input


@pytest.mark.parametrize("text, words", [("", ["empty"]), ("subject,session,trial,choice,reward\n", ["no rows"]),
                                         ("\x00\x01garbage,\n\"unterminated", ["cannot read"])],
                         ids=["empty file", "header only", "garbage"])
def test_empty_or_garbage_file(text, words, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, err = _run(["fit", str(path), "--out", str(tmp_path / "out")], capsys)
    _assert_one_line_error(code, err, words)


@pytest.mark.parametrize("args, words", [
    (["fit", "{missing}", "--out", "{out}"], ["no trial table", "missing.csv"]),
    (["fit", "{good}", "--rule", "sarsa", "--out", "{out}"], ["sarsa", "reinforce-baseline"]),
    (["fit", "{good}", "--rule", "zero", "--features", "bias,pupil", "--out", "{out}"], ["pupil"]),
    (["fit", "{good}", "--rule", "zero", "--features", "bias,bias", "--out", "{out}"], ["duplicate"]),
    (["compare", "{good}", "--rules", "zero,sarsa", "--out", "{out}"], ["sarsa"]),
    (["compare", "{good}", "--rules", "zero", "--folds", "5", "--out", "{out}"], ["k must be"]),
    (["simulate", "--rule", "mlp", "--out", "{out}.csv"], ["mlp", "cannot simulate"]),
    (["simulate", "--animals", "0", "--out", "{out}.csv"], ["--animals"]),
    (["simulate", "--reward-levels", "1,1.5", "--out", "{out}.csv"], ["--reward-levels", "1,1.5"]),
    (["fit", "{good}", "--out", "{out}", "--max-steps", "0"], ["--max-steps"]),
    (["fit", "{good}", "--out", "{out}", "--max-steps", "many"], ["--max-steps", "many"]),
    (["fit", "{good}"], ["--out"]),
    (["frobnicate"], ["frobnicate"]),
    (["fit", "{good}", "--out", "{out}", "--threads", "0"], ["--threads"]),
    (["fit", "{good}", "--out", "{out}", "--draws", "0"], ["--draws"]),
    (["fit", "{good}", "--rule", "mlp", "--hidden", "32,0", "--out", "{out}"], ["--hidden", "32,0"]),
    (["fit", "{good}", "--rule", "mlp", "--hidden", "wide", "--out", "{out}"], ["--hidden", "wide"]),
    (["fit", "{good}", "--rule", "mlp", "--activation", "sigmoid", "--out", "{out}"], ["--activation", "sigmoid"]),
    (["fit", "{good}", "--rule", "mlp", "--restarts", "0", "--out", "{out}"], ["--restarts", "0"]),
    (["fit", "{good}", "--rule", "mlp", "--budget", "nan", "--out", "{out}"], ["--budget", "nan"]),
    (["fit", "{good}", "--rule", "mlp", "--budget", "inf", "--out", "{out}"], ["--budget", "inf"]),
    (["fit", "{good}", "--rule", "mlp", "--budget", "-5", "--out", "{out}"], ["--budget", "-5"]),
    (["fit", "{good}", "--rule", "compressed+mlp", "--out", "{out}"], ["compressed+mlp", "reinforce-baseline+mlp"]),
], ids=["nonexistent file", "unknown rule", "unknown feature", "duplicate feature", "unknown rule in list",
        "more folds than animals", "simulate a neural rule", "zero animals", "reward probability above 1",
        "zero steps", "non-integer option",
        "missing --out", "unknown command", "zero threads", "zero draws", "zero width", "non-integer width",
        "unknown activation", "zero restarts", "nan budget", "infinite budget", "negative budget",
        "hybrid of a simulator-only rule"])
def test_bad_arguments(args, words, tmp_path, capsys):
    good = tmp_path / "good.csv"
    good_table().to_csv(good, index=False)
    fill = {"missing": str(tmp_path / "missing.csv"), "good": str(good), "out": str(tmp_path / "out")}
    argv = [a.format(**fill) for a in args]
    try:
        code, err = _run(argv, capsys)
    except SystemExit as exc:  # argparse's own errors exit through our one-line parser.error
        code, err = exc.code, capsys.readouterr().err
    _assert_one_line_error(code, err, words)


def test_console_script_prints_no_traceback(tmp_path):
    edit, words = TABLE_CASES["contrast above 1"]
    path = tmp_path / "bad.csv"
    edit(good_table()).to_csv(path, index=False)
    exe = Path(sys.executable).with_name("learnrules")
    proc = subprocess.run([str(exe), "fit", str(path), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    _assert_one_line_error(proc.returncode, proc.stderr, words)
    assert proc.stdout == ""
