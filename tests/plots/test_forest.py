import numpy as np
import pandas as pd
import pytest

from learnrules.plots import plot_forest


def tables():
    rows = []
    for i, s in enumerate(["a", "b", "c"]):
        rows.append((s, "all", "alpha", "stimulus", 0.1 + 0.01 * i, 0.09, 0.12 + 0.01 * i, 0.2 + 0.05 * i))
        rows.append((s, "all", "beta", "", 0.4, 0.3, 0.5, 0.45))
    animals = pd.DataFrame(rows, columns=["subject", "group", "parameter", "feature", "mean", "lower", "upper",
                                          "unpooled"])
    population = pd.DataFrame([("all", "alpha", "stimulus", "median", 0.1), ("all", "alpha", "stimulus", "sd", 0.5),
                               ("all", "beta", "", "median", 0.4), ("all", "beta", "", "sd", 0.2)],
                              columns=["group", "parameter", "feature", "quantity", "mean"])
    return animals, population


def test_forest_has_a_panel_per_parameter_and_a_row_per_animal(tmp_path):
    animals, population = tables()
    fig = plot_forest(animals, population, path=tmp_path / "f.png")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["alpha[stimulus]", "beta"]
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["a", "b", "c"]
    xs = [line.get_xdata() for line in axes[0].lines]
    assert any(len(x) == 3 and np.allclose(x, [0.2, 0.25, 0.3]) for x in xs)  # the animals' own-data estimates
    assert any(len(x) == 2 and np.allclose(x, [0.1, 0.1]) for x in xs)  # the population median line
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_forest_refuses_a_shared_fit():
    with pytest.raises(ValueError, match="pooling='shared'"):
        plot_forest(pd.DataFrame())
