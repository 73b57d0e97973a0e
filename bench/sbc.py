"""Simulation-based calibration of a rule's fit: rank histograms, chi-square, ECDF bands, coverage, weight bands.

Each replicate draws the rule's parameters from the fit's prior and the noise sd per weight log-uniform on
[0.01, 0.08], simulates ``--animals`` x ``--trials`` (IBL-like task, features bias and stimulus), fits with the
default options (noise learned) and ranks each unconstrained truth among 99 draws of the fit's Gaussian
posterior (:mod:`learnrules.synthetic.sbc`). Calibrated posteriors give uniform ranks: every entry's binned
ranks should pass chi-square at p > 0.01 and their ECDF difference stay inside the 95% simultaneous bands;
the share of truths inside the central 50% / 90% of the draws, and inside the fit's reported 90% interval
(``table_90``, likelihood-ratio bounds included), should lie within 2 binomial SE of 50% / 90%. ``z`` is the
truth's standardized error on the unconstrained scale (calibrated: mean 0, sd 1). Weight rows give the share
of trials whose true weight lies inside the fit's 90% band, pooled over replicates and by the weight's true
noise sd.

Usage:
``python bench/sbc.py --rule reinforce-baseline --seeds 0-199 [--animals 4] [--trials 2000] [--name NAME]``
appends one block of rows per replicate to bench/results/NAME.csv (default ``sbc_<rule>``; a rerun skips
seeds already there) and writes NAME.md and NAME.png;
``python bench/sbc.py --rule RULE --merge A.csv B.csv [--name NAME]`` reports earlier runs' rows together.
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from learnrules.other_rules import DeltaRule, ReinforceBaseline, ZeroRule  # noqa: E402
from learnrules.synthetic.sbc import SBCDesign, sbc_replicate  # noqa: E402
from learnrules.synthetic.sbc_stats import coverage, ecdf_bands, ecdf_difference, ecdf_inside, rank_chi2  # noqa: E402

from report import markdown, setup  # noqa: E402

RESULTS = Path(__file__).with_name("results")
RULES = {"random-walk": ZeroRule, "reinforce-baseline": ReinforceBaseline, "delta": DeltaRule}


def summarize(table: pd.DataFrame, n_ranks: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per posterior entry: the SBC tests and coverages; per weight: the band coverage."""
    params = table[table["kind"] == "param"]
    rows = []
    for entry, group in params.groupby("entry", sort=False):
        ranks = group["rank"].to_numpy(int)
        bands = ecdf_bands(len(ranks), n_ranks)
        _, p = rank_chi2(ranks, n_ranks)
        c50, se50, d50 = coverage(group["inside_50"].to_numpy(bool), 0.5)
        c90, se90, d90 = coverage(group["inside_90"].to_numpy(bool), 0.9)
        t90, _, dt90 = coverage(group["table_90"].to_numpy(bool), 0.9)
        rows.append({"entry": entry, "n": len(ranks), "chi2_p": p, "ecdf_inside": ecdf_inside(ranks, bands, n_ranks),
                     "cov_50": c50, "se_50": se50, "dev_50_se": d50, "cov_90": c90, "se_90": se90,
                     "dev_90_se": d90, "table_90": t90, "table_dev_se": dt90, "z_mean": group["z"].mean(),
                     "z_sd": group["z"].std(), "clamped": int(group["clamped"].sum()),
                     "not_finite": int((~group["finite"].astype(bool)).sum())})
    bands = table[table["kind"] == "band"].copy()
    bands["sigma_bin"] = pd.cut(bands["true"], [0, 0.02, 0.04, 1.0], labels=["<0.02", "0.02-0.04", ">0.04"])
    weights = bands.groupby(["entry", "sigma_bin"], observed=True).agg(
        cohorts=("seed", "size"), band_90=("band_90", "mean"), band_min=("band_90", "min")).reset_index()
    pooled = bands.groupby("entry").agg(cohorts=("seed", "size"), band_90=("band_90", "mean"),
                                        band_min=("band_90", "min")).reset_index()
    pooled.insert(1, "sigma_bin", "all")
    return pd.DataFrame(rows), pd.concat([pooled, weights], ignore_index=True)


def plot(table: pd.DataFrame, n_ranks: int, path: Path, title: str) -> None:
    """Rank histograms (top) and ECDF differences with 95% simultaneous bands (bottom), one column per entry."""
    params = table[table["kind"] == "param"]
    entries = list(dict.fromkeys(params["entry"]))
    fig, axes = plt.subplots(2, len(entries), figsize=(3.2 * len(entries), 5.6), squeeze=False)
    for j, entry in enumerate(entries):
        ranks = params.loc[params["entry"] == entry, "rank"].to_numpy(int)
        n = len(ranks)
        top, bottom = axes[0, j], axes[1, j]
        top.hist(ranks, bins=np.linspace(0, n_ranks, 11), color="0.6", edgecolor="k")
        low, high = np.quantile(np.random.default_rng(0).binomial(n, 0.1, 10000), [0.005, 0.995])
        top.axhspan(low, high, color="C0", alpha=0.2)
        top.set_title(entry, fontsize=9)
        top.set_xlabel("rank")
        bands = ecdf_bands(n, n_ranks)
        z, diff = ecdf_difference(ranks, n_ranks)
        bottom.fill_between(bands.z, bands.lower, bands.upper, color="C0", alpha=0.2, step="mid")
        bottom.plot(z, diff, color="k", lw=1)
        bottom.axhline(0, color="0.5", lw=0.5)
        bottom.set_xlabel("fractional rank")
    axes[0, 0].set_ylabel("cohorts")
    axes[1, 0].set_ylabel("ECDF - uniform")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(table: pd.DataFrame, name: str, rule: str, design: SBCDesign, note: str = "") -> str:
    """Write NAME.md and NAME.png from the rows; return the markdown."""
    n_ranks = design.n_draws + 1
    failed = table[table["kind"] == "failed"]
    table = table[table["kind"] != "failed"]
    entries, weights = summarize(table, n_ranks)
    cohorts = table["seed"].nunique()
    title = (f"SBC, {rule}: {cohorts} fitted cohorts of {design.n_animals} animals x {design.n_trials} trials, "
             f"{design.n_draws} posterior draws each")
    plot(table, n_ranks, RESULTS / f"{name}.png", title)
    entries["passes"] = ((entries["chi2_p"] > 0.01) & entries["ecdf_inside"] & (entries["dev_50_se"].abs() <= 2)
                         & (entries["dev_90_se"].abs() <= 2))
    passed = entries[entries["passes"]]
    fits = table.drop_duplicates("seed")
    text = (f"# {title}\n\n" + (f"{note}\n\n" if note else "")
            + "Truths: rule parameters from the fit's prior, noise sd log-uniform on "
            f"{design.sigma_range} per weight, initial weights N(0, {design.init_sd}^2). Fit time per cohort: "
            f"median {fits['fit_s'].median():.2f} s, max {fits['fit_s'].max():.1f} s; converged "
            f"{int(fits['converged'].sum())}/{len(fits)}; fits that failed (left out of the tests): {len(failed)} "
            f"(seeds {failed['seed'].tolist()}).\n\n"
            f"Entries passing all four (chi-square p > 0.01, ECDF inside 95% bands, 50% and 90% coverage within "
            f"2 SE): {len(passed)}/{len(entries)}.\n\n"
            "## Posterior entries (unconstrained scale)\n\n" + markdown(entries)
            + "\n\n## Weight-trajectory 90% bands: share of trials holding the true weight\n\n"
            + markdown(weights) + f"\n\n![rank histograms and ECDF differences]({name}.png)\n")
    (RESULTS / f"{name}.md").write_text(text)
    return text


def seed_range(text: str) -> list[int]:
    """``"4-11"`` -> [4, ..., 11]; ``"3"`` -> [3]."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=RULES, required=True)
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0-19"))
    parser.add_argument("--animals", type=int, default=4)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--name")
    parser.add_argument("--merge", nargs="+", type=Path, help="CSV files of earlier runs: report them, fit nothing")
    parser.add_argument("--note", default="", help="a line the report states under its title")
    args = parser.parse_args()
    setup(log_level=None)
    name = args.name or f"sbc_{args.rule}"
    design = SBCDesign(n_animals=args.animals, n_trials=args.trials)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.csv"
    if args.merge:
        table = pd.concat([pd.read_csv(f) for f in args.merge], ignore_index=True).drop_duplicates(
            ["seed", "kind", "entry"])
        table.to_csv(path, index=False)
    else:
        done = set(pd.read_csv(path)["seed"]) if path.exists() else set()
        rule = RULES[args.rule]()
        for seed in args.seeds:
            if seed in done:
                continue
            began = time.perf_counter()
            try:
                rows = pd.DataFrame(sbc_replicate(rule, seed=seed, design=design))
            except (FloatingPointError, torch.linalg.LinAlgError) as err:  # a failed fit is a result: count it
                rows = pd.DataFrame([{"rule": rule.name, "seed": seed, "kind": "failed", "entry": str(err)[:200]}])
            if path.exists():  # appended rows must follow the file's columns, whatever this replicate produced
                rows = rows.reindex(columns=pd.read_csv(path, nrows=0).columns)
            rows.to_csv(path, mode="a", header=not path.exists(), index=False)
            print(f"seed {seed}: {time.perf_counter() - began:.1f} s", flush=True)
        table = pd.read_csv(path)
    print(report(table, name, args.rule, design, args.note))


if __name__ == "__main__":
    main()
