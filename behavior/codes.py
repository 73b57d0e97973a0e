"""Choice, reward and correct-side codes: detection, mapping to the canonical 0/1 codes, and sign checks.

Canonical codes (what :class:`~learnrules.behavior.trials.AnimalTrials` stores):
choice 1 = right, 0 = left, NaN = no-go kept as missing; reward 1 / 0; answer 1 = right, 0 = left, NaN unknown.

Source codes:

``ibl``
    IBL ALF: ``choice`` -1 = counter-clockwise wheel turn = the animal reported RIGHT (-> 1), +1 = LEFT
    (-> 0), 0 = no-go. ``feedbackType`` +1 rewarded, -1 not.
``binary``
    psytrack_learning / Liu et al. preprocessed tables: ``choice`` 0/1 with 1 = right, reward 0/1.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from learnrules.behavior.validate import bad_value, check_codes, check_not_nan

__all__ = [
    "detect_coding",
    "map_choice",
    "map_reward",
    "map_answer",
    "derive_answer",
    "looks_flipped",
    "check_choice_sign",
    "check_one_coding",
]

logger = logging.getLogger(__name__)

Coding = Literal["ibl", "binary"]


def detect_coding(choice: np.ndarray, reward: np.ndarray, requested: Literal["auto", "ibl", "binary"]) -> Coding:
    """Decide the choice code: IBL when any choice or reward is -1, else binary 0/1.

    A -1 only exists in IBL's codes (choice -1 = right, feedbackType -1 = unrewarded, which every IBL no-go
    trial has). The one IBL table this cannot recognise is one with only rewarded left (+1) choices; the
    sign check then catches it when contrasts are given. Pass ``coding`` explicitly to skip detection.
    """
    if requested != "auto":
        return requested
    if np.any(choice == -1):
        logger.info("choice coding: IBL (choice contains -1 = right, +1 = left, 0 = no-go)")
        return "ibl"
    if np.any(reward == -1):
        logger.info("choice coding: IBL (reward column contains -1; choice -1 = right, +1 = left, 0 = no-go)")
        return "ibl"
    logger.info("choice coding: binary 0/1 (1 = right; no -1 codes in choice or reward)")
    return "binary"


def map_choice(choice: np.ndarray, rows: np.ndarray, coding: Coding) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(choice, is_nogo)`` in canonical codes; raise on NaN or unknown codes."""
    check_not_nan(choice, "choice", rows)
    if coding == "ibl":
        check_codes(choice, "choice", rows, (-1, 0, 1), "IBL: -1 = right, +1 = left, 0 = no-go")
        nogo = choice == 0
        # IBL: -1 (counter-clockwise) = reported right -> 1; +1 (clockwise) = left -> 0.
        mapped = np.where(choice == -1, 1.0, np.where(choice == 1, 0.0, np.nan))
        return mapped, nogo
    check_codes(choice, "choice", rows, (0, 1), "binary: 1 = right, 0 = left")
    return choice.astype(float), np.zeros(len(choice), dtype=bool)


def map_reward(reward: np.ndarray, rows: np.ndarray, column: str) -> np.ndarray:
    """Map feedback codes {-1, 1} or {0, 1} to 0/1; raise on NaN or a mix of -1 and 0."""
    check_not_nan(reward, column, rows)
    if np.any(reward == -1):
        check_codes(reward, column, rows, (-1, 1), "IBL feedback: +1 rewarded, -1 not")
        return (reward + 1.0) / 2.0
    check_codes(reward, column, rows, (0, 1), "1 rewarded, 0 not")
    return reward.astype(float)


def map_answer(answer: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Map a correct-side column to 0/1 (1 = right); accept 0/1, or psytrack's 1/2 (2 = right).

    NaN stays NaN (unknown). The 1/2 code is chosen when a 2 appears; a mix of 0 and 2 is an error.
    """
    if np.any(answer == 2):
        check_codes(answer, "answer", rows, (1, 2), "psytrack: 2 = right, 1 = left")
        return answer - 1.0
    check_codes(answer, "answer", rows, (0, 1), "1 = right, 0 = left")
    return answer.astype(float)


def derive_answer(choice: np.ndarray, reward: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Derive the correct side: the side with the higher contrast, else (a tie, e.g. zero contrast) from feedback.

    On a tie with a choice made, a rewarded choice was correct and an unrewarded one was wrong (two
    alternatives, deterministic feedback as in IBL); a no-go tie stays NaN.
    """
    answer = np.full(len(choice), np.nan)
    answer[right > left] = 1.0
    answer[left > right] = 0.0
    tie = (left == right) & ~np.isnan(choice)
    answer[tie] = np.where(reward[tie] == 1.0, choice[tie], 1.0 - choice[tie])
    return answer


def looks_flipped(choice: np.ndarray, reward: np.ndarray, reference: np.ndarray) -> bool:
    """Return True when most rewarded trials with a known correct side chose the other side."""
    usable = (reward == 1.0) & ~np.isnan(choice) & ~np.isnan(reference)
    return bool(2 * (usable & (choice != reference)).sum() > usable.sum())


def check_choice_sign(choice: np.ndarray, reward: np.ndarray, reference: np.ndarray, rows: np.ndarray,
                      coding: Coding, *, subject: str | None = None) -> None:
    """Raise when most rewarded trials chose the side opposite to the correct side: a flipped choice code.

    ``reference`` is the correct side known independently of feedback (the answer column, or the side with
    the higher contrast), NaN where unknown. Getting the sign wrong silently flips every stimulus weight.
    ``subject`` names the animal when the arrays are one animal's.
    """
    if not looks_flipped(choice, reward, reference):
        return
    usable = (reward == 1.0) & ~np.isnan(choice) & ~np.isnan(reference)
    wrong = usable & (choice != reference)
    first = np.flatnonzero(wrong)[0]
    convention = "IBL: -1 = right, +1 = left" if coding == "ibl" else "binary: 1 = right, 0 = left"
    whose = "" if subject is None else f" of subject {subject!r}"
    raise bad_value("choice", int(rows[first]), "right" if choice[first] == 1 else "left",
                    f"contradicts the correct side on a rewarded trial ({int(wrong.sum())} of "
                    f"{int(usable.sum())} rewarded trials{whose} do): the choice code looks flipped ({convention})")


def _named(subjects: list[str]) -> str:
    shown = ", ".join(repr(s) for s in subjects[:5])
    return shown + (f" and {len(subjects) - 5} more" if len(subjects) > 5 else "")


def check_one_coding(choice: np.ndarray, reward: np.ndarray, subject: np.ndarray) -> None:
    """Raise when some animals' codes are IBL's and others' are 0/1: one coding cannot read them all.

    An animal reads as IBL when it has a choice or feedback -1; as 0/1 when it has a feedback 0 or a
    rewarded choice 0 (an IBL no-go is never rewarded). Animals with neither follow the file's coding.
    Read with one coding, a 0/1 animal would lose its left choices as no-go and its right choices would
    become left. Passing ``coding`` explicitly skips this check.
    """
    ibl, binary = [], []
    for name in dict.fromkeys(subject.tolist()):
        mine = subject == name
        c, r = choice[mine], reward[mine]
        if np.any(c == -1) or np.any(r == -1):
            ibl.append(str(name))
        elif np.any(r == 0) or np.any((c == 0) & (r == 1)):
            binary.append(str(name))
    if ibl and binary:
        raise ValueError(f"column 'choice': animals {_named(ibl)} use IBL codes (-1 = right, +1 = left, 0 = no-go) "
                         f"and animals {_named(binary)} use 0/1 codes (1 = right); split the table by coding, or "
                         "state the coding (coding='ibl' or 'binary', --coding)")
