"""The example cohort shipped in ``learnrules.data``: how it is made, so anyone can rebuild it.

``python -c "from learnrules.synthetic import write_example; write_example('data')"`` (from the repository
root) rewrites ``data/example_cohort.csv.gz`` and its metadata, byte for byte.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import torch

from learnrules.other_rules.reinforce import ReinforceBaseline
from learnrules.synthetic.cohort import SimulatedCohort, simulate_cohort
from learnrules.synthetic.task import IBLTask

__all__ = ["EXAMPLE_CONFIG", "make_example_cohort", "example_metadata_dict", "write_example"]

logger = logging.getLogger(__name__)

EXAMPLE_CONFIG = {"n_animals": 8, "n_trials": 3000, "sigma": 0.02, "sigma_session": 0.1,
                  "features": ("bias", "stimulus"), "init_mean": 0.0, "init_sd": 0.5, "session_length": 500,
                  "biased_blocks": True}


def make_example_cohort(seed: int = 2025) -> SimulatedCohort:
    """Simulate the example cohort: 8 animals x 3000 trials, ReinforceBaseline with default parameters.

    Biased blocks are on, the per-trial weight noise is 0.02 (0.1 at session starts).
    """
    c = EXAMPLE_CONFIG
    task = IBLTask(session_length=c["session_length"], biased_blocks=c["biased_blocks"])
    return simulate_cohort(ReinforceBaseline(), n_animals=c["n_animals"], n_trials=c["n_trials"],
                           sigma=c["sigma"], sigma_session=c["sigma_session"], features=c["features"],
                           task=task, init_mean=c["init_mean"], init_sd=c["init_sd"], seed=seed,
                           dtype=torch.float64)


def example_metadata_dict(cohort: SimulatedCohort) -> dict:
    """Return the JSON-ready metadata of a cohort made by :func:`make_example_cohort`."""
    acc = cohort.table["reward"].to_numpy().reshape(len(cohort.subjects), -1)
    return {
        "rule": cohort.rule.name, "registry_name": "reinforce-baseline",
        "params": {k: np.asarray(v).tolist() for k, v in cohort.params.items()},
        "seed": cohort.seed, **{k: list(v) if isinstance(v, tuple) else v for k, v in EXAMPLE_CONFIG.items()},
        "coding": "IBL ALF: choice -1 = right, +1 = left; feedbackType +1 rewarded, -1 not; NaN contrast on "
                  "the side without the stimulus",
        "subjects": list(cohort.subjects),
        "accuracy_first_200": float(acc[:, :200].mean()), "accuracy_last_500": float(acc[:, -500:].mean()),
        "made_by": "learnrules.synthetic.examples.make_example_cohort",
    }


def write_example(directory: str | Path, *, seed: int = 2025) -> tuple[Path, Path]:
    """Write ``example_cohort.csv.gz`` (IBL coding) and ``example_cohort.json`` into ``directory``."""
    directory = Path(directory)
    cohort = make_example_cohort(seed)
    csv_path, json_path = directory / "example_cohort.csv.gz", directory / "example_cohort.json"
    text = cohort.to_ibl_table().to_csv(index=False, float_format="%.6g")
    with gzip.GzipFile(csv_path, "wb", mtime=0) as fh:  # mtime=0: byte-identical rebuilds
        fh.write(text.encode())
    json_path.write_text(json.dumps(example_metadata_dict(cohort), indent=2) + "\n")
    logger.info("wrote %s (%d bytes) and %s", csv_path, csv_path.stat().st_size, json_path)
    return csv_path, json_path

