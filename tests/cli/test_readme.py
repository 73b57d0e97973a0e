"""The README: short, for users, and every command in it runs as written.

The slow tests run the Python example and every ``learnrules`` line of the README's shell blocks, in that
order, in a temporary folder (the ONE line on a local ONE cache the test writes from the shipped IBL mouse).
``learnrules demo`` is the one line left to ``make demo`` and ``tests/cli/test_cli_end_to_end.py``
(``test_demo_leaves_figures_and_posterior``), which run it; the ``make`` lines are the targets ``.ci/run``
runs (``test``, ``docs``) or ``demo``.
"""

import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnrules import cli
from learnrules.data import load_ibl_mouse

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
HISTORY_WORDS = re.compile(r"\b(stop \d+|stop|until|since stop|earlier method|used to|no longer)\b", re.I)


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def shell_lines() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_is_short_and_speaks_to_users():
    text = README.read_text()
    assert len(text) <= 8000, len(text)
    assert not HISTORY_WORDS.findall(text)


def test_readme_has_a_short_python_example():
    blocks = python_blocks()
    assert len(blocks) == 1
    assert len(blocks[0].strip().splitlines()) <= 12
    assert "fit(" in blocks[0] and "load_trials(" in blocks[0]


def test_readme_commands_are_make_targets_ci_runs_or_learnrules_commands():
    lines = shell_lines()
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    ci = (ROOT / ".ci" / "run").read_text()
    makes = [line.split()[1] for line in lines if line.startswith("make ")]
    assert makes == ["demo", "test", "docs"]
    assert set(makes) <= targets
    assert "make test" in ci and "make docs" in ci
    commands = [shlex.split(line)[1] for line in lines if line.startswith("learnrules ")]
    assert set(commands) == {"simulate", "fit", "compare", "recover", "demo"}
    assert len(makes) + len(commands) == len(lines)


def test_readme_error_line_is_what_the_command_prints(tmp_path, capsys):
    (line,) = [ln for ln in README.read_text().splitlines() if ln.startswith("learnrules: error:")]
    table = tmp_path / "bad.csv"
    pd.DataFrame({"contrastLeft": [0.0, 0.5], "contrastRight": [1.5, 0.0], "choice": [1, 0],
                  "reward": [1, 1]}).to_csv(table, index=False)
    assert cli.main(["fit", str(table), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == line


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" in out
    assert (tmp_path / "fit.npz").stat().st_size > 0


PROTOCOLS = {"training": "_iblrig_tasks_trainingChoiceWorld6.4.2", "biased": "_iblrig_tasks_biasedChoiceWorld6.4.2"}


def write_one_cache(root: Path) -> None:
    """The shipped IBL mouse as an ALF tree, indexed by ONE's make_parquet_db, with its sessions' protocols."""
    parquet = pytest.importorskip("iblutil.io.parquet")
    from one.alf.cache import make_parquet_db

    table = load_ibl_mouse()
    for date, block in table.groupby("date"):
        alf = root / "hoferlab" / "Subjects" / "SWC_054" / str(date) / "001" / "alf"
        alf.mkdir(parents=True)
        for name in ("choice", "feedbackType", "contrastLeft", "contrastRight", "probabilityLeft"):
            np.save(alf / f"_ibl_trials.{name}.npy", block[name].to_numpy(dtype=float))
    make_parquet_db(root, hash_files=True)
    sessions, meta = parquet.load(root / "sessions.pqt")
    protocol = table.groupby("date")["task_protocol"].first()
    sessions["task_protocol"] = [PROTOCOLS[protocol[str(d)]] for d in sessions["date"]]
    parquet.save(root / "sessions.pqt", sessions, meta)


@pytest.mark.slow
def test_readme_command_lines_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_one_cache(tmp_path / "ONE")
    lines = [line for line in shell_lines() if line.startswith("learnrules ") and " demo" not in line]
    assert len(lines) == 6
    for line in lines:
        argv = shlex.split(line)[1:]
        assert cli.main([*argv, "--quiet"]) == 0, line
        out = tmp_path / argv[argv.index("--out") + 1]
        assert out.exists(), line
    capsys.readouterr()
    assert pd.read_csv("sim.csv")["subject"].nunique() == 4
    for fit in ("fit_rb", "fit_hybrid", "fit_ibl"):
        assert (tmp_path / fit / "weights.csv").stat().st_size > 0 and (tmp_path / fit / "posterior.nc").exists()
    assert (tmp_path / "fit_hybrid" / "rule.pt").exists()
    assert set(pd.read_csv("cmp/compare.csv")["rule"]) == {"zero", "reinforce-baseline"}
    assert (tmp_path / "rec" / "recovery.json").exists()
    ibl = pd.read_csv("fit_ibl/weights.csv")
    assert ibl["session"].nunique() == 5  # the five trainingChoiceWorld sessions of SWC_054
    stimulus = ibl.loc[ibl["feature"] == "stimulus", "mean"]
    assert stimulus.mean() > 1  # a trained mouse: right side up
