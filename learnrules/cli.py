"""Command line: ``learnrules <command>``. It only parses arguments and calls the library.

Bad input (a malformed table, a missing file, an unknown rule or feature) ends with one line on stderr,
``learnrules: error: ...``, and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from learnrules import __version__

__all__ = ["build_parser", "main"]

_EPILOG = """examples:
  learnrules demo                                      # the whole pipeline on the embedded example (~5 min)
  learnrules simulate --rule reinforce --animals 5 --trials 2000 --seed 1 --out sim.csv
  learnrules fit sim.csv --rule reinforce-baseline --features bias,stimulus --out fit_rb
  learnrules fit trials.parquet --rule reinforce-baseline+mlp --out fit_hybrid
  learnrules compare sim.csv --rules zero,reinforce,reinforce-baseline,reinforce-baseline+mlp --folds 5 --out cmp
  learnrules recover --rule reinforce-baseline --animals 8 --trials 3000 --seed 0 --out rec

run 'learnrules COMMAND --help' for the options of a command."""

_USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                FloatingPointError)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``learnrules: error: ...`` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print a one-line error (no usage block) and exit with status 2."""
        self.exit(2, f"learnrules: error: {message} (see '{self.prog} --help')\n")


# Kept in sync with learnrules.workflow.RULE_NAMES (tested): importing it here would load torch for --help.
RULE_NAMES = ("zero", "reinforce", "reinforce-baseline", "asymmetric", "delta", "hebbian", "eligibility",
              "reward-gated", "compressed", "mlp", "gru")


def _rule_help() -> str:
    return ("learning rule: " + ", ".join(RULE_NAMES) + " (zero = random walk, as PsyTrack), or a hybrid of a "
            "parametric rule and a network, e.g. reinforce-baseline+mlp, delta+gru")


def _common(p: argparse.ArgumentParser, *, seed: int | None = 0) -> None:
    p.add_argument("--seed", type=_seed, default=seed, help=f"random seed (default {seed})")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the final table and errors: no warnings, no progress bars")
    p.add_argument("--verbose", "-v", action="store_true", help="log learnrules' progress messages to stderr")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: fits are many small banded solves, where extra threads mostly "
                        "add overhead; on a busy 2-core machine 2 threads made a fit 10x slower)")


def _widths(text: str) -> tuple[int, ...]:
    """Parse ``--hidden``: comma-separated positive layer widths."""
    parts = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() and int(t) > 0 for t in parts):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers such as 32,32, got {text!r}")
    return tuple(int(t) for t in parts)


def _number(text: str) -> float:
    """Parse a number; NaN where ``text`` is not one (every range check below then refuses it)."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _positive(text: str) -> float:
    """Parse a positive finite number of seconds."""
    value = _number(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _count(text: str) -> int:
    """Parse a positive integer."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _nonnegative(text: str) -> float:
    """Parse a finite number >= 0."""
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _folds(text: str) -> int:
    """Parse a number of folds: an integer >= 2 (one fold would hold out everything and fit nothing)."""
    if not text.strip().isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    """Parse a random seed: an integer in [0, 2**32)."""
    if not text.strip().isdigit() or int(text) >= 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32), got {text!r}")
    return int(text)


def _probabilities(text: str) -> tuple[float, ...]:
    """Parse ``--reward-levels``: comma-separated probabilities."""
    try:
        levels = tuple(float(t) for t in text.split(","))
    except ValueError:
        levels = ()
    if not levels or not all(0 <= v <= 1 for v in levels):
        raise argparse.ArgumentTypeError(f"must be comma-separated probabilities such as 1,0.5, got {text!r}")
    return levels


def _simulation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--animals", type=_count, default=5, help="number of animals (default 5)")
    p.add_argument("--trials", type=int, default=2000, help="trials per animal (default 2000)")
    p.add_argument("--sigma", type=_nonnegative, default=0.02, help="weight noise sd per trial (default 0.02)")
    p.add_argument("--reward-levels", type=_probabilities, default=(1.0,),
                   help="probability that a correct choice is rewarded; several values cycle in blocks of 20-100 "
                        "trials, e.g. 1,0.5 (default 1)")


def _fitting(p: argparse.ArgumentParser, *, draws: bool = True) -> None:
    p.add_argument("--features", default="bias,stimulus",
                   help="comma-separated GLM features: bias, stimulus, stimulus_left, stimulus_right, prev_choice, "
                        "prev_reward, prev_answer or a column of the table (default bias,stimulus)")
    p.add_argument("--budget", type=_positive, default=900.0,
                   help="wall-time cap of each neural or hybrid rule's network fit in seconds; fits normally stop "
                        "on their tolerance first (default 900)")
    p.add_argument("--method", choices=("variational", "rollout"), default="variational",
                   help="fit of a neural rule: variational (weights with noise, default) or rollout (sigma = 0, "
                        "Liu et al. 2025; it stops when 20%% of each animal's sessions, held out of the loss, stop "
                        "improving)")
    p.add_argument("--restarts", type=_count, default=1,
                   help="initializations of each neural or hybrid rule to fit (seeds --seed, --seed + 1, ...), "
                        "keeping the best on sessions held out of the likelihood (default 1)")
    p.add_argument("--max-steps", type=_count, default=None,
                   help="cap on the optimizer steps of every fit (rollout: epochs); default 200 for parametric "
                        "rules, 1000 for a network")
    p.add_argument("--hidden", type=_widths, default=None,
                   help="hidden-layer widths of the mlp / gru update network, comma-separated (default 16,16; "
                        "32,32 with --method rollout)")
    p.add_argument("--activation", choices=("relu", "tanh", "silu"), default=None,
                   help="nonlinearity of the mlp / gru update network (default tanh; relu with --method rollout)")
    if draws:
        p.add_argument("--draws", type=_count, default=None,
                       help="posterior draws in posterior.nc (default 100, fewer for large tables so that the file "
                            "stays under ~500 MB, at least 10)")


def _pooling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pooling", choices=("shared", "hierarchical", "independent"), default="shared",
                   help="parametric rules: one set of parameters for all animals (shared, default), each animal "
                        "its own drawn from a fitted population (hierarchical: writes animal_parameters.csv and "
                        "population.csv), or each its own alone (independent)")


def _workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=_count, default=None,
                   help="worker processes for independent fits (the rules x folds of compare and --heldout, the "
                        "initializations of --restarts), one torch thread each (default: one per core); results "
                        "do not depend on it")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the fits on a Dask cluster instead, e.g. tcp://10.0.0.5:8786 (pip install "
                        "'learnrules[dask]')")


def _table_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", nargs="?", default=None,
                   help="trial table: CSV or Parquet (IBL ALF or 0/1 coding; see README 'Data'); or --one-subject")
    one = p.add_argument_group("IBL data through ONE (pip install 'learnrules[ibl]'), instead of a table")
    one.add_argument("--one-subject", action="append", default=None, metavar="NAME",
                     help="IBL subject nickname to read from a ONE cache (repeat for several)")
    one.add_argument("--one-cache", default=None, metavar="DIR",
                     help="folder of the ONE cache (its sessions/datasets tables), read in local mode")
    one.add_argument("--one-protocol", default=None, metavar="TEXT",
                     help="keep only sessions whose task protocol contains TEXT, e.g. trainingChoiceWorld")
    p.add_argument("--nogo", choices=("drop", "missing"), default="drop",
                   help="IBL no-go trials (choice 0): drop them, or keep them as missing choices")
    p.add_argument("--coding", choices=("auto", "ibl", "binary"), default="auto",
                   help="choice coding: auto (IBL when a choice or feedback is -1; a table mixing codings between "
                        "animals is refused), ibl (-1 = right, +1 = left, 0 = no-go) or binary (1 = right)")
    p.add_argument("--session-order", choices=("auto", "file"), default="auto",
                   help="session order: auto (a 'date' column, else session numbers or ISO dates; other labels are "
                        "refused) or file (order of first appearance in the table)")


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (written whole: built beside it, then moved there)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder whole")


def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit one learning rule to a trial table",
                       description="Fit one learning rule; write posterior.nc, weights.csv, summary.json, fit.npz, "
                                   "figures/ into --out.",
                       epilog="example: learnrules fit trials.csv --rule reinforce-baseline --out fit_rb")
    _table_input(p)
    p.add_argument("--rule", default="reinforce-baseline", help=_rule_help() + " (default reinforce-baseline)")
    _output(p)
    p.add_argument("--heldout", action="store_true",
                   help="also score held-out sessions by cross-validation (--folds refits; each fit keeps the "
                        "held-out sessions' choices in its history, out of its likelihood)")
    p.add_argument("--folds", type=_folds, default=3, help="folds of --heldout (default 3)")
    p.add_argument("--no-feature-check", action="store_true",
                   help="skip the check of the history features the fit lacks (prev_choice, prev_reward: the random "
                        "walk fitted with and without each, written to history_features.csv)")
    _pooling(p)
    _fitting(p)
    _workers(p)
    _common(p)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate animals learning an IBL-like task with a known rule",
                       description="Simulate a cohort; write TABLE.csv, TABLE.weights.csv (true weights and "
                                   "updates) and TABLE.json (rule, parameters, seed).",
                       epilog="example: learnrules simulate --rule reinforce --animals 5 --trials 2000 --out sim.csv")
    p.add_argument("--rule", default="reinforce-baseline", help="a parametric rule (default reinforce-baseline)")
    _simulation(p)
    p.add_argument("--population-sd", type=_nonnegative, default=0.0,
                   help="sd across animals of every rule parameter on its unconstrained scale (log scale for a "
                        "rate); each animal draws its own around the defaults (default 0: all share them)")
    p.add_argument("--features", default="bias,stimulus", help="GLM features of the agents (default bias,stimulus)")
    p.add_argument("--coding", choices=("binary", "ibl"), default="binary",
                   help="choice coding of the table: binary (1 = right) or ibl (ALF: -1 = right)")
    p.add_argument("--out", required=True, help="output CSV file")
    _common(p)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare rules by cross-validated held-out log-likelihood",
                       description="Cross-validate rules (held-out animals or sessions); write crossval.csv, "
                                   "compare.csv, summary.json and figures/comparison.png into --out.",
                       epilog="example: learnrules compare trials.csv --rules zero,reinforce-baseline,mlp --out cmp")
    _table_input(p)
    p.add_argument("--rules", default="zero,reinforce-baseline,reinforce-baseline+mlp",
                   help="comma-separated rules (default zero,reinforce-baseline,reinforce-baseline+mlp)")
    p.add_argument("--folds", type=_folds, default=5, help="number of folds (default 5)")
    _pooling(p)
    p.add_argument("--scheme", choices=("animals", "sessions"), default="animals",
                   help="hold out whole animals (Liu et al.) or sessions within animals, which stay in the fit's "
                        "history (their choices move the weights) but out of its likelihood (default animals)")
    _output(p)
    _fitting(p, draws=False)
    _workers(p)
    _common(p)


def _add_recover(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recover", help="simulate with a known rule, fit, and score the recovery",
                       description="Simulate, fit, and score: trajectory correlation, parameter interval coverage, "
                                   "update error, held-out gap to the true rule; writes fit outputs + recovery.json.",
                       epilog="example: learnrules recover --rule reinforce --fit-rule mlp --out rec")
    p.add_argument("--rule", default="reinforce-baseline", help="true (simulated) parametric rule")
    p.add_argument("--fit-rule", default=None, help="rule to fit (default: the true rule)")
    _simulation(p)
    _output(p)
    _fitting(p)
    _common(p)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on the embedded example data (~5 minutes)",
                       description="Fit the random walk, REINFORCE+baseline and an MLP rule to the embedded "
                                   "example cohort, compare them on held-out animals, write figures and posteriors.",
                       epilog="example: learnrules demo --out demo_output")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--budget", type=_positive, default=300.0,
                   help="wall-time cap of each network fit in seconds (default 300; they converge sooner)")
    p.add_argument("--draws", type=int, default=40, help="posterior draws in each posterior.nc (default 40)")
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``learnrules`` command."""
    parser = _Parser(prog="learnrules", description="Infer animals' learning rules from their choices.",
                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"learnrules {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_fit, _add_simulate, _add_compare, _add_recover, _add_demo):
        add(sub)
    for p in sub.choices.values():
        p.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    from learnrules import commands, demo

    return {"fit": commands.cmd_fit, "simulate": commands.cmd_simulate, "compare": commands.cmd_compare,
            "recover": commands.cmd_recover, "demo": demo.cmd_demo}[command]


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    # Other packages log their warnings (errors only with --quiet); learnrules also its progress with --verbose.
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    package = logging.getLogger("learnrules")
    package_level = package.level
    package.setLevel(logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING)
    import torch

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the application's choice: fits and networks in double precision
    # Not restored after: raising the thread count again once MKL has run makes LAPACK hang
    # ("Parameter 6 was incorrect on entry to DLASWP", torch 2.13 CPU build, MKL 2024.2).
    torch.set_num_threads(args.threads)
    try:
        return _handler(args.command)(args)
    except _USER_ERRORS as err:
        sys.stderr.write(f"learnrules: error: {_one_line(err)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("learnrules: interrupted\n")
        return 130
    finally:  # leave an in-process caller's default dtype and log level as they were
        torch.set_default_dtype(dtype)
        package.setLevel(package_level)


if __name__ == "__main__":
    sys.exit(main())
