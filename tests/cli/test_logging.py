"""What the command line prints: --quiet only the final table, --verbose learnrules' progress but no other
package's INFO lines."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from learnrules import cli
from learnrules.other_rules import make_rule
from learnrules.synthetic import simulate_cohort

EXE = str(Path(sys.executable).with_name("learnrules"))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A cohort whose REINFORCE+baseline fit warns: a noise sd the data cannot tell from 0 (a clamped interval)."""
    cohort = simulate_cohort(make_rule("reinforce-baseline"), n_animals=4, n_trials=1000,
                             params={"alpha": [0.05, 0.05], "beta": 0.5}, sigma=0.01, seed=7)
    path = tmp_path_factory.mktemp("log") / "sim.csv"
    cohort.table.to_csv(path, index=False)
    return path


def _warnings(records):
    return [r for r in records if r.name.startswith("learnrules") and r.levelno >= logging.WARNING]


def test_quiet_fit_prints_the_table_and_no_warning(table, tmp_path, caplog, capsys):
    args = ["fit", str(table), "--rule", "reinforce-baseline", "--draws", "10"]
    assert cli.main([*args, "--out", str(tmp_path / "loud")]) == 0
    assert _warnings(caplog.records), "the fit is expected to warn about a clamped interval"
    caplog.clear()
    capsys.readouterr()
    assert cli.main([*args, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert not _warnings(caplog.records)
    out, err = capsys.readouterr()
    assert err == "" and "alpha" in out and "beta" in out
    assert logging.getLogger("learnrules").level == logging.NOTSET  # an in-process caller's level is restored


def test_verbose_logs_learnrules_progress_and_no_other_package_info(tmp_path):
    proc = subprocess.run([EXE, "simulate", "--animals", "2", "--trials", "200", "--out", str(tmp_path / "s.csv"),
                           "--verbose"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith("INFO learnrules.") for line in lines)
    assert [line for line in lines if line.startswith("INFO") and not line.startswith("INFO learnrules.")] == []
