"""Discrete actions with an off-policy learner: DQN imitating the bundled PPO expert on seals/CartPole-v0.

    python benchmarks/dqn_cartpole.py [--seeds 0 1 2] [--timesteps 50000] [--out dqn-cartpole.json]

DQN takes rl-baselines3-zoo's tuned CartPole settings (SB3's defaults do not
learn CartPole in this budget even on the true reward); its replay buffer is
relabelled every round, as SAC's is. For each seed it prints the true return
(mean of 10 deterministic episodes) after DiffusionScoreIL's training and after
the same budget on the true reward (``debug_use_ground_truth``), and writes them
to ``benchmarks/results/OUT``.
"""

import argparse
import pathlib
import time

import numpy as np
import seals  # noqa: F401  (registers seals/CartPole-v0)
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_diffusion_il import DiffusionScoreIL, data, load_demonstrations
from sb3_diffusion_il.benchmark.experts import versions

from common import write_result

ENV_ID = "seals/CartPole-v0"
# rl-baselines3-zoo's hyperparams/dqn.yml, CartPole-v1.
ZOO_DQN = dict(
    learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
)
EVAL_SEED = 10_000


def run(seed: int, timesteps: int, ground_truth: bool) -> float:
    venv = make_vec_env(ENV_ID, n_envs=1, seed=seed)
    learner = DQN("MlpPolicy", venv, seed=seed, **ZOO_DQN)
    trainer = DiffusionScoreIL(
        demonstrations=load_demonstrations(ENV_ID), venv=venv, gen_algo=learner, seed=seed,
        debug_use_ground_truth=ground_truth,
    )
    trainer.train(timesteps, progress_bar=False)
    mean, _ = evaluate_policy(learner, make_vec_env(ENV_ID, n_envs=1, seed=EVAL_SEED), n_eval_episodes=10)
    return float(mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--out", default="dqn-cartpole.json")
    args = parser.parse_args()
    th.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        imitation, truth = (run(seed, args.timesteps, ground_truth) for ground_truth in (False, True))
        rows.append({"seed": seed, "diffusion_score": imitation, "true_reward": truth,
                     "normalized": data.normalized_return(ENV_ID, imitation),
                     "seconds": time.perf_counter() - start})
        print(f"seed {seed}: DiffusionScoreIL {imitation:.1f}, true reward {truth:.1f} "
              f"(normalised {rows[-1]['normalized']:.2f})", flush=True)
    result = {"env_id": ENV_ID, "timesteps": args.timesteps, "dqn_kwargs": ZOO_DQN, "rows": rows,
              "mean_normalized": float(np.mean([r["normalized"] for r in rows])), "versions": versions()}
    write_result(pathlib.Path("benchmarks/results") / args.out, result)


if __name__ == "__main__":
    main()
