"""Fidelity of the production cost estimator against the reference one.

    python benchmarks/fidelity.py [--env Pendulum-v1] [--states 4096] [--precision auto]

The reference scores each state at 500 timesteps on an even grid of [0, T),
one noise draw each, through both score networks. The production estimator is
``DiffusionScoreReward.cost`` with the trainer's default settings. For one
fixed pair of trained score networks (the expert's fitted on the bundled
demonstrations; the learner's refitted on a random policy's states by the
trainer's own round refit, ``train_learner_score``, which with today's
defaults starts from new weights and takes ``learner_fit_steps`` steps, as in
every round of training) and learner states from the random policy, this prints
the Spearman rank correlation of per-state costs (mean and least over 5 draws
of the production estimator's timesteps), the relative error of the batch
mean, the network evaluations per state of each, and the correlation of two
reference estimates with different noise (the ceiling), and writes them to
``benchmarks/results/fidelity-<env>.json`` (``fidelity-<env>-<precision>.json``
with a ``--precision`` other than the default).
"""

import argparse
import pathlib

import numpy as np
import seals  # noqa: F401  (registers the seals/* tasks)
import torch as th
from imitation.data import rollout
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from common import write_result

from sb3_diffusion_il import DiffusionScoreIL, data, load_demonstrations
from sb3_diffusion_il.cost import PRECISIONS, PROFILE_STATES, DiffusionScoreReward, diffusion_score_cost

RESULTS = pathlib.Path(__file__).parent / "results"
REFERENCE_TIMESTEPS = 500
DRAWS = 5


def spearman(a: th.Tensor, b: th.Tensor) -> float:
    """Rank correlation (no ties expected among continuous costs)."""
    ranks = [x.argsort().argsort().double() for x in (a, b)]
    ranks = [r - r.mean() for r in ranks]
    return float((ranks[0] * ranks[1]).sum() / (ranks[0].norm() * ranks[1].norm()))


def random_policy_states(env_id: str, n: int, seed: int) -> np.ndarray:
    venv = make_vec_env(env_id, n_envs=1, seed=seed)
    trajectories = rollout.generate_trajectories(
        None, venv, rollout.make_sample_until(min_timesteps=n), rng=np.random.default_rng(seed),
    )
    return np.concatenate([t.obs[1:] for t in trajectories]).astype(np.float32)


def trained_pair(env_id: str, learner_states: np.ndarray, precision: str) -> DiffusionScoreIL:
    """A trainer whose expert score is fitted on the demonstrations and whose learner score
    is refitted on ``learner_states`` as a training round refits it (the trainer's defaults)."""
    venv = make_vec_env(env_id, n_envs=1, seed=0)
    trainer = DiffusionScoreIL(
        demonstrations=load_demonstrations(env_id), venv=venv, gen_algo=SAC("MlpPolicy", venv), seed=0,
        cost_precision=precision,
    )
    trainer.pretrain_expert(progress_bar=False)
    trainer.learner_buffer.add(learner_states)
    trainer.train_learner_score()
    return trainer


def reference_cost(reward: DiffusionScoreReward, x: th.Tensor, seed: int = 2) -> th.Tensor:
    """The reference estimate: an even grid of 500 timesteps, one noise draw each."""
    grid = th.arange(REFERENCE_TIMESTEPS) * (reward.schedule.n_steps // REFERENCE_TIMESTEPS)
    return diffusion_score_cost(
        reward.expert, reward.learner, reward.schedule, x, generator=th.Generator().manual_seed(seed), timesteps=grid,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1", help="a task with bundled demonstrations")
    parser.add_argument("--states", type=int, default=4096)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the production estimator's arithmetic (the reference's is float32)")
    args = parser.parse_args()
    th.manual_seed(0)

    states = random_policy_states(args.env, 4 * args.states, seed=0)
    trainer = trained_pair(args.env, states, args.precision)
    rng = np.random.default_rng(1)
    x = th.as_tensor(states[rng.choice(len(states), args.states, replace=False)])
    reward = trainer.reward_train
    with th.inference_mode():
        reference = reference_cost(reward, x)
        # The reference is an estimate too: a second one, with other noise, bounds what any estimator can reach.
        reference_again = reference_cost(reward, x, seed=7)
        # As in training: each round profiles the proposal on a sample of learner
        # states and draws its timesteps; DRAWS such rounds show the spread.
        reward.generator.manual_seed(3)
        productions = []
        for _ in range(DRAWS):
            reward.resample_timesteps(x[th.randperm(len(x), generator=reward.generator)[:PROFILE_STATES]])
            productions.append(reward.cost(x))
    correlations = [spearman(p, reference) for p in productions]
    errors = [float(abs(p.mean() - reference.mean()) / abs(reference.mean())) for p in productions]
    result = {
        "env_id": args.env,
        "states": args.states,
        "spearman": float(np.mean(correlations)),
        "spearman_min": min(correlations),
        "spearman_per_draw": correlations,
        "spearman_reference_vs_itself": spearman(reference_again, reference),
        "mean_relative_error": float(np.mean(errors)),
        "reference_mean_cost": float(reference.mean()),
        "production_mean_cost": float(th.stack(productions).mean()),
        "precision": args.precision,
        "bfloat16": reward.bfloat16,
        "evaluations_per_state": {"reference": 2 * REFERENCE_TIMESTEPS, "production": reward.evaluations_per_sample},
        # Once a round, shared by every state scored in it (a round of 1,000 SAC steps
        # scores up to 256,000 minibatch states; this benchmark scores 4,096).
        "production_profile_evaluations": reward.evaluations_per_profile,
        "command": f"python benchmarks/fidelity.py --env {args.env} --states {args.states} "
                   f"--precision {args.precision}",
    }
    suffix = "" if args.precision == "auto" else f"-{args.precision}"
    write_result(RESULTS / f"fidelity-{data.demo_path(args.env).stem}{suffix}.json", result)


if __name__ == "__main__":
    main()
