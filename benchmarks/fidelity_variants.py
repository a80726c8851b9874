"""Exploration: cost estimators at equal network evaluations against the reference, on fidelity.py's pair.

    python benchmarks/fidelity_variants.py [--env Pendulum-v1]

The candidates the production estimator was chosen from, each spending 48
network evaluations per state (the reference spends 1,000): 24 stratified
uniform timesteps with one noise draw each (the previous production
estimator); 12 stratified timesteps with antithetic noise pairs; and 12
shared, importance-sampled timesteps with antithetic pairs, for proposals
that mix the pair noise with several weights of the cross-state spread
(production: `SPREAD_WEIGHT`). Prints the mean and least Spearman correlation
with the 500-timestep reference over 5 draws and writes them to
``benchmarks/results/fidelity-variants-<env>.json``.
"""

import argparse

import numpy as np
import torch as th
from common import write_result
from fidelity import DRAWS, RESULTS, random_policy_states, reference_cost, spearman, trained_pair

from sb3_diffusion_il import data
from sb3_diffusion_il.cost import PROFILE_STATES, diffusion_score_cost, quantile_timesteps, timestep_proposal

TIMESTEPS = 12
SPREAD_WEIGHTS = (0.0, 0.1, 0.3, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    args = parser.parse_args()
    th.manual_seed(0)
    states = random_policy_states(args.env, 4 * 4096, 0)
    trainer = trained_pair(args.env, states, "float32")  # the candidates and the reference compute in float32
    x = th.as_tensor(states[np.random.default_rng(1).choice(len(states), 4096, replace=False)])
    reward, schedule = trainer.reward_train, trainer.schedule
    nets = (reward.expert, reward.learner, schedule)
    g = th.Generator().manual_seed(3)

    def importance(spread_weight: float) -> th.Tensor:
        profile = x[th.randperm(len(x), generator=g)[:PROFILE_STATES]]
        proposal = timestep_proposal(*nets, profile, generator=g, spread_weight=spread_weight)
        t, w = quantile_timesteps(proposal, TIMESTEPS, g)
        return diffusion_score_cost(*nets, x, generator=g, timesteps=t, weights=w, antithetic=True)

    variants = {
        "stratified, 24 timesteps": lambda: diffusion_score_cost(*nets, x, 2 * TIMESTEPS, g),
        "stratified, 12 timesteps x antithetic pair": (
            lambda: diffusion_score_cost(*nets, x, TIMESTEPS, g, antithetic=True)),
        **{
            f"shared importance-sampled, 12 timesteps x antithetic pair, spread weight {w}": (lambda w=w: importance(w))
            for w in SPREAD_WEIGHTS
        },
    }
    rows = {}
    with th.inference_mode():
        reference = reference_cost(reward, x)
        for name, estimate in variants.items():
            correlations = [spearman(estimate(), reference) for _ in range(DRAWS)]
            rows[name] = {"mean": float(np.mean(correlations)), "min": min(correlations)}
    result = {
        "env_id": args.env,
        "evaluations_per_state": 4 * TIMESTEPS,
        "spearman_vs_reference": rows,
        "command": f"python benchmarks/fidelity_variants.py --env {args.env}",
    }
    write_result(RESULTS / f"fidelity-variants-{data.demo_path(args.env).stem}.json", result)


if __name__ == "__main__":
    main()
