"""The real IBL mouse shipped in learnrules.data: read with the IBL coding, right side up."""

import numpy as np

from learnrules.behavior import load_trials
from learnrules.data import load_ibl_mouse


def test_ibl_mouse_reads_as_one_animal_with_its_sessions_and_no_go_trials_dropped():
    table = load_ibl_mouse()
    data = load_trials(table)
    assert len(table) == 7844 and data.choice_coding == "ibl"
    (animal,) = data.animals
    assert animal.subject == "SWC_054" and len(np.unique(animal.session)) == 11
    assert animal.n_trials == 7844 - int((table["choice"] == 0).sum()) == 7825


def test_rewarded_choices_point_to_the_side_with_contrast():
    (animal,) = load_trials(load_ibl_mouse()).animals
    frame = animal.to_frame()
    right = frame["contrastRight"].fillna(0) > 0
    left = frame["contrastLeft"].fillna(0) > 0
    rewarded = frame["reward"] == 1
    assert rewarded.mean() > 0.7
    assert (frame.loc[rewarded & right, "choice"] == 1).all()
    assert (frame.loc[rewarded & left, "choice"] == 0).all()
