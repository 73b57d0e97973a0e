"""
Fit a lab's trial table and read the outputs
============================================

A real mouse of the International Brain Laboratory, SWC_054, ships with learnrules
(:func:`learnrules.data.load_ibl_mouse`). Here its first three sessions play the part of your lab's table: we
write them to a CSV file, read it, look at how the weights move, ask whether history features are needed,
fit REINFORCE with baseline from the command line and read every output it writes.
"""

# %%
# The table
# ---------
# One row per trial, in IBL's ALF codes: ``choice`` -1 means the mouse turned the wheel counter-clockwise,
# reporting the **right** side; ``feedbackType`` +1 is a reward; the side without a stimulus has a NaN
# contrast.
import json
import tempfile
from pathlib import Path

import pandas as pd
import torch

from learnrules.behavior import load_trials, summarize
from learnrules.cli import main as learnrules
from learnrules.data import load_ibl_mouse
from learnrules.inference import fit
from learnrules.plots import plot_weights

torch.set_default_dtype(torch.float64)  # fits run in double precision
torch.set_num_threads(1)  # many small banded solves: one thread is fastest

work = Path(tempfile.mkdtemp(prefix="learnrules_"))
mouse = load_ibl_mouse()
table = mouse[mouse["session"] < 3]  # the first three sessions, about 1,900 trials
table.to_csv(work / "swc054.csv", index=False)
table.head()

# %%
# Read it: the coding is detected (IBL here), the choice sign is checked on the rewarded trials, no-go
# trials are dropped and counted, and the sessions are put in order.
data = load_trials(work / "swc054.csv")
print(data.choice_coding, data.n_trials, "trials,", data.n_nogo_dropped, "no-go trials dropped")
summarize(data)

# %%
# How do the weights move?
# ------------------------
# The random walk (no rule) asks nothing of the learning: it shows how the bias and the stimulus weight move
# from trial to trial, with 90% credible bands. It takes seconds.
walk = fit(data, features=("bias", "stimulus"), seed=0)
fig = plot_weights(walk.weights)

# %%
# Does the mouse need history features?
# -------------------------------------
# With ``bias`` and ``stimulus`` alone, the bias weight absorbs the mouse's tendency to repeat its last
# choice or to switch after an error. Adding ``prev_choice`` and ``prev_reward`` gives that tendency its own
# weights; the ELBO (a lower bound on the log evidence, in nats) says whether the data support them.
history = fit(data, features=("bias", "stimulus", "prev_choice", "prev_reward"), seed=0)
print(f"ELBO, bias + stimulus:            {walk.elbo:9.1f}")
print(f"ELBO, + previous choice and reward: {history.elbo:9.1f}")
fig = plot_weights(history.weights)

# %%
# The history features raise the evidence: on real mice, fit rules with them too, and check on held-out
# sessions (``learnrules compare TABLE --scheme sessions``, see the fourth tutorial).
#
# Fit a learning rule from the command line
# -----------------------------------------
# ``learnrules fit`` does the same as ``fit`` and writes every output into a folder. In a terminal:
#
# .. code-block:: sh
#
#    learnrules fit swc054.csv --rule reinforce-baseline --out fit_swc054
#
# Here we call the same command from Python.
code = learnrules(["fit", str(work / "swc054.csv"), "--rule", "reinforce-baseline", "--draws", "20",
                   "--out", str(work / "fit_swc054"), "--quiet"])
assert code == 0
sorted(p.name for p in (work / "fit_swc054").iterdir())

# %%
# Reading the outputs
# -------------------
# ``parameters.csv``: the rule's learning rate per weight (``alpha``), its reward baseline (``beta``) and the
# weight noise (``sigma``), each with a 90% interval. A ``clamped`` row is one the data barely inform: its
# interval is a likelihood-ratio interval along that parameter (``inf`` where the data do not close it).
pd.read_csv(work / "fit_swc054" / "parameters.csv")

# %%
# ``weights.csv``: the posterior of every weight on every trial, with the table's subject, session and trial.
weights = pd.read_csv(work / "fit_swc054" / "weights.csv")
weights.head()

# %%
# ``summary.json``: the rule, the ELBO, the number of steps, whether the fit converged, and its time.
summary = json.loads((work / "fit_swc054" / "summary.json").read_text())
{key: summary[key] for key in ("rule", "n_trials", "elbo", "n_steps", "converged", "elapsed_s")}

# %%
# ``figures/``: the weights, the rule's update map, the drift field, learning curves and psychometric curves
# of the mouse against digital twins (the fitted rule replayed on its stimuli). ``posterior.nc`` opens in
# ArviZ (fourth tutorial); ``fit.npz`` reads back with ``FitResult.load``.
sorted(p.name for p in (work / "fit_swc054" / "figures").iterdir())
