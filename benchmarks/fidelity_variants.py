"""Exploration: variance-reduced cost estimators against the reference, on fidelity.py's trained pair.

    python benchmarks/fidelity_variants.py [--env Pendulum-v1]

Not the production estimator: candidates for it. For k timesteps per state it
compares plain stratified sampling, antithetic noise pairs (eps, -eps) sharing
a timestep, importance sampling of timesteps with density proportional to the
per-timestep standard deviation of the cost (stratified in its quantiles), and
both together. Prints Spearman correlations with the 500-timestep reference and
writes them to ``benchmarks/results/fidelity-variants-<env>.json``.
"""

import argparse

import numpy as np
import torch as th
from common import write_result
from fidelity import RESULTS, random_policy_states, spearman, trained_pair

from sb3_diffusion_il import data
from sb3_diffusion_il.cost import diffusion_score_cost
from sb3_diffusion_il.score_net import denoising_errors

PROFILE_STATES = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    args = parser.parse_args()
    th.manual_seed(0)
    states = random_policy_states(args.env, 4 * 4096, 0)
    trainer = trained_pair(args.env, states)
    x = th.as_tensor(states[np.random.default_rng(1).choice(len(states), 4096, replace=False)])
    reward, schedule = trainer.reward_train, trainer.schedule
    expert, learner, n_steps = reward.expert, reward.learner, schedule.n_steps

    def gap(x0, t, eps):
        x_t = schedule.noise(x0, t, eps)
        return denoising_errors(expert, x_t, t, eps) - denoising_errors(learner, x_t, t, eps)

    def estimate(t, weights=None, antithetic=False, generator=None):
        n, k = t.shape
        x0 = expert.normalize(x).repeat_interleave(k, 0)
        eps = th.randn(x0.shape, generator=generator)
        if antithetic:
            eps = eps.reshape(n, k, -1)
            eps[:, 1::2] = -eps[:, 0::2]
            eps = eps.reshape(n * k, -1)
        g = gap(x0, t.reshape(-1), eps).reshape(n, k)
        return (g if weights is None else g * weights).mean(1)

    def stratified(q, k, generator, pairs):
        """Timesteps stratified in the quantiles of density q, and their importance weights."""
        m = k // 2 if pairs else k
        cdf = th.cumsum(q, 0) / q.sum()
        u = (th.arange(m) + th.rand((len(x), m), generator=generator)) / m
        t = th.searchsorted(cdf, u).clamp(max=n_steps - 1)
        w = (1 / n_steps) / (q[t] / q.sum())
        return (t.repeat_interleave(2, 1), w.repeat_interleave(2, 1)) if pairs else (t, w)

    with th.inference_mode():
        grid = th.arange(500) * (n_steps // 500)
        reference = diffusion_score_cost(expert, learner, schedule, x, 500, th.Generator().manual_seed(2), grid)
        x0 = expert.normalize(x[:PROFILE_STATES])
        std = th.tensor([
            gap(x0, th.full((PROFILE_STATES,), t), th.randn(x0.shape)).std().item() for t in range(0, n_steps, 10)
        ]).repeat_interleave(10)
        uniform, proposal = th.ones(n_steps), std + 0.02 * std.max()
        rows = {}
        for k in (16, 24):
            g = th.Generator().manual_seed(3)
            variants = {
                "stratified": estimate(stratified(uniform, k, g, False)[0], generator=g),
                "antithetic": estimate(stratified(uniform, k, g, True)[0], antithetic=True, generator=g),
                "importance": estimate(*stratified(proposal, k, g, False), generator=g),
                "importance+antithetic": estimate(*stratified(proposal, k, g, True), antithetic=True, generator=g),
            }
            rows[f"k={k}"] = {name: spearman(v, reference) for name, v in variants.items()}
    result = {
        "env_id": args.env,
        "spearman_vs_reference": rows,
        "cost_std_by_timestep": {str(t): float(std[t]) for t in (0, 50, 100, 300, 650)},
        "command": f"python benchmarks/fidelity_variants.py --env {args.env}",
    }
    write_result(RESULTS / f"fidelity-variants-{data.demo_path(args.env).stem}.json", result)


if __name__ == "__main__":
    main()
