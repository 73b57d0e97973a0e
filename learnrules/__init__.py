"""learnrules: infer how animals learn from their trial-by-trial choices.

Subpackages: ``learnrules.behavior`` (trial tables, design matrices), ``learnrules.models`` (the generative
model and neural rules), ``learnrules.other_rules`` (parametric rules), ``learnrules.inference`` (fitting,
evaluation, ArviZ export), ``learnrules.synthetic`` (tasks, agents, cohorts), ``learnrules.data`` (examples).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("learnrules")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
