"""The hybrid rule's network fit on CPU and on a CUDA GPU, in float64 and float32: same steps, same numbers?

A simulated REINFORCE+baseline cohort (12 animals x 10,000 trials, sigma 0.01) is fitted with REINFORCE+baseline
on the CPU in float64; then the hybrid ``reinforce-baseline+mlp`` takes a fixed number of L-BFGS steps from
that fit (no tolerance stop) on each device and dtype, from the same network initialization. Reported: seconds,
the final ELBO, the largest relative ELBO difference along the trace and the largest difference of the fitted
network tensors and rule parameters, each against the CPU run of the same dtype; and the GPU's speed-up.

Usage: python bench/neural_gpu.py [--steps N] [--animals N] [--trials T]  (writes results/neural_gpu.md)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from learnrules.inference.variational.fit import fit
from learnrules.inference.variational.optimize import Objective, optimize
from learnrules.inference.variational.theta import Theta
from learnrules.models.hybrid import HybridRule
from learnrules.other_rules import make_rule
from learnrules.synthetic import simulate_cohort
from learnrules.workflow import NEURAL_ACTIVATION, NEURAL_FIT_CONFIG, NEURAL_HIDDEN, network_part

from report import markdown, setup

RESULTS = Path(__file__).parent / "results"


def moved(cohort, device: str, dtype: torch.dtype):  # noqa: ANN001, ANN201
    """The cohort's tensors on ``device``, its float tensors in ``dtype``."""
    out = {}
    for f in fields(cohort):
        v = getattr(cohort, f.name)
        if isinstance(v, torch.Tensor):
            v = v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
        out[f.name] = v
    return replace(cohort, **out)


def run(cohort, base, device: str, dtype: torch.dtype, steps: int) -> dict:  # noqa: ANN001
    torch.set_default_device(device)
    try:
        data = moved(cohort, device, dtype)
        with torch.device("cpu"):  # the same initialization on every device
            part = network_part("mlp", 2, seed=0, hidden=NEURAL_HIDDEN, activation=NEURAL_ACTIVATION)
        rule = HybridRule(make_rule("reinforce-baseline"), part)
        rule.network.to(device=device, dtype=dtype)
        config = replace(NEURAL_FIT_CONFIG, max_steps=steps, tol=0.0, grad_tol=0.0, log_every=10**9)
        theta = Theta(rule, data, config)
        theta.warm_start(base)
        objective = Objective(rule, theta, data, config, seed=0)
        objective.init = torch.as_tensor(base.weights_mean, device=device, dtype=dtype)
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        try:
            trace, _, n_steps = optimize(objective, config, progress=False)
        except FloatingPointError as err:  # float32 cannot factor the posterior precision once sigma is small
            return {"device": device, "dtype": str(dtype).removeprefix("torch."), "error": str(err)[:160]}
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - began
        where = {str(data.features.device), str(next(rule.network.parameters()).device),
                 str(objective.post.mean.device)}
        memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
        network = torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for p in rule.network.parameters()])
        params = torch.cat([u.detach().reshape(-1).to("cpu", torch.float64) for u in theta.rule_u.values()])
        return {"device": device, "dtype": str(dtype).removeprefix("torch."), "ran_on": "+".join(sorted(where)),
                "gpu_mib": memory, "steps": n_steps, "seconds": seconds,
                "trace": np.asarray(trace), "network": network.numpy(), "params": params.numpy()}
    finally:
        torch.set_default_device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--animals", type=int, default=12)
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    setup(log_level=None)
    sim = simulate_cohort(make_rule("reinforce-baseline"), n_animals=args.animals, n_trials=args.trials, sigma=0.01,
                          seed=0, dtype=torch.float64)
    cohort = sim.tensors(np.arange(args.animals))
    base = fit(cohort, rule=make_rule("reinforce-baseline"), config=replace(NEURAL_FIT_CONFIG, network_prior_sd=None,
                                                                            max_steps=200, tol=1e-6, window=2,
                                                                            grad_tol=1e-9), seed=0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    runs = [run(cohort, base, d, dt, args.steps) for dt in (torch.float64, torch.float32) for d in devices]
    rows = []
    for r in runs:
        ref = next(c for c in runs if c["device"] == "cpu" and c["dtype"] == r["dtype"])
        if "error" in r or "error" in ref:
            rows.append({"device": r["device"], "dtype": r["dtype"], "error": r.get("error", "CPU run failed")})
            continue
        n = min(len(r["trace"]), len(ref["trace"]))
        rows.append({"device": r["device"], "dtype": r["dtype"], "ran_on": r["ran_on"], "gpu_mib": r["gpu_mib"],
                     "steps": r["steps"], "seconds": r["seconds"],
                     "speed_up": ref["seconds"] / r["seconds"], "final_elbo": r["trace"][-1],
                     "max_rel_elbo_diff": float(np.max(np.abs(r["trace"][:n] - ref["trace"][:n])
                                                       / np.abs(ref["trace"][:n]))),
                     "max_network_diff": float(np.max(np.abs(r["network"] - ref["network"]))),
                     "max_param_diff": float(np.max(np.abs(r["params"] - ref["params"])))})
    frame = pd.DataFrame(rows).astype(object).fillna("")
    print(frame.to_string(index=False))
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    text = "\n".join([
        "# The hybrid rule's network fit on CPU and GPU", "",
        f"{args.animals} simulated REINFORCE+baseline animals x {args.trials} trials; {args.steps} L-BFGS steps of "
        f"`reinforce-baseline+mlp` from the same float64 CPU fit of REINFORCE+baseline. GPU: {name}; CPU: "
        "1 torch thread of the same machine. Differences are against the CPU run of the same dtype.", "",
        markdown(frame, digits=4), "",
        f"Regenerate: `python bench/neural_gpu.py --steps {args.steps}` on a machine with CUDA.", ""])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "neural_gpu.md").write_text(text)


if __name__ == "__main__":
    main()
