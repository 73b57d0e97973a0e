"""The README's Python example runs as written (slow: it fits the 8 x 3000 example cohort)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_short_python_example():
    blocks = python_blocks()
    assert len(blocks) == 1
    assert len(blocks[0].strip().splitlines()) <= 12
    assert "fit(" in blocks[0] and "load_trials(" in blocks[0]


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" in out
    assert (tmp_path / "fit.npz").stat().st_size > 0
