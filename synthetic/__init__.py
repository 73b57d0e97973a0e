"""Tasks, learning agents, simulated cohorts and recovery scores."""

from learnrules.synthetic.agent import AgentTrajectories, coerce_params, simulate_agents, task_features
from learnrules.synthetic.cohort import SimulatedCohort, simulate_cohort
from learnrules.synthetic.examples import make_example_cohort, write_example
from learnrules.synthetic.recovery import (
    UpdateError,
    UpdateStates,
    drift_rmse,
    loglik_gap,
    task_stimuli,
    trajectory_correlation,
    update_grid,
    update_rmse,
    visited_states,
)
from learnrules.synthetic.task import IBLTask, TaskTrials

__all__ = [
    "AgentTrajectories", "IBLTask", "SimulatedCohort", "TaskTrials", "UpdateError", "UpdateStates",
    "coerce_params", "drift_rmse", "loglik_gap", "make_example_cohort", "simulate_agents", "simulate_cohort",
    "task_features", "task_stimuli", "trajectory_correlation", "update_grid", "update_rmse", "visited_states",
    "write_example",
]
