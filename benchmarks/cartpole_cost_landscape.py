"""Where the plain cost puts its weight on seals/CartPole-v0: the cost of the learner's states by pole angle.

    python benchmarks/cartpole_cost_landscape.py [--rounds 3] [--out cartpole-cost-landscape.json]

imitation's GAIL tutorial PPO is trained by DiffusionScoreIL on the plain ``-c``
(``reward_saturation=None``) for a few rounds; then the cost of the last
round's states is summarised by the pole's angle from upright, next to the cost
of the expert's held-out states. seals/CartPole-v0 has a fixed horizon, so
after the pole falls the episode goes on, and those states are hundreds of the
expert's standard deviations away: the figures show how much larger and more
spread their costs are (``docs/settings.md``, on ``reward_saturation``).
"""

import argparse
import pathlib

import numpy as np
import seals  # noqa: F401  (registers seals/CartPole-v0)
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import DiffusionScoreIL, load_demonstrations
from sb3_diffusion_il.benchmark.compare import TUTORIAL_PPO
from sb3_diffusion_il.benchmark.experts import versions

from common import write_result

ENV_ID = "seals/CartPole-v0"
ANGLE = 2  # the pole's angle is observation coordinate 2
BINS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.5, np.inf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="cartpole-cost-landscape.json")
    args = parser.parse_args()
    th.set_num_threads(1)
    venv = make_vec_env(ENV_ID, n_envs=TUTORIAL_PPO.n_envs, seed=args.seed)
    learner = TUTORIAL_PPO.build(venv, args.seed)
    trainer = DiffusionScoreIL(
        demonstrations=load_demonstrations(ENV_ID), venv=venv, gen_algo=learner, seed=args.seed,
        reward_saturation=None,
    )
    trainer.train(args.rounds * trainer.gen_train_timesteps, progress_bar=False)
    states = trainer.learner_buffer.newest(trainer.gen_train_timesteps)
    with th.no_grad():
        costs = trainer.reward_train.base.cost(th.as_tensor(states)).numpy()
        expert = trainer.reward_train.base.cost(trainer.expert_heldout).numpy()
    angle = np.abs(states[:, ANGLE])
    rows = []
    for low, high in zip(BINS[:-1], BINS[1:]):
        inside = (angle >= low) & (angle < high)
        if inside.any():
            q10, median, q90 = np.quantile(costs[inside], [0.1, 0.5, 0.9])
            rows.append({"angle_from": low, "angle_to": None if np.isinf(high) else high, "states": int(inside.sum()),
                         "cost_q10": float(q10), "cost_median": float(median), "cost_q90": float(q90)})
    write_result(pathlib.Path("benchmarks/results") / args.out, {
        "env_id": ENV_ID, "rounds": args.rounds, "seed": args.seed, "by_angle": rows,
        "learner_angle_median": float(np.median(angle)),
        "expert_cost_median": float(np.median(expert)),
        "expert_angle_std": float(trainer.expert_data[:, ANGLE].std()),
        "versions": versions(),
    })


if __name__ == "__main__":
    main()
