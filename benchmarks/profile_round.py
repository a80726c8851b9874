"""Where one DiffusionScoreIL + SAC round spends its time (cProfile, cumulative).

    python benchmarks/profile_round.py [--env HalfCheetah-v4] [--fill 200000] [--rows 45]

Like ``overhead.py``: SB3's default SAC, the replay buffer first filled with
``--fill`` random-policy transitions, random-policy demonstrations; one
warm-up round, then one profiled round of 1,000 env steps. Prints the
profile; writes nothing (a tool for finding the next saving, not a figure).
"""

import argparse
import cProfile
import pstats

import numpy as np
import torch as th
from imitation.data import rollout
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from overhead import LEARNING_STARTS, fill, random_transitions

from sb3_diffusion_il import DiffusionScoreIL

# The expert score's fit does not change the cost's compute: keep it short.
EXPERT_FIT_STEPS = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--fill", type=int, default=200_000, help="random-policy transitions stored before")
    parser.add_argument("--rows", type=int, default=45, help="profile rows printed")
    args = parser.parse_args()
    th.set_num_threads(1)
    venv = make_vec_env(args.env, n_envs=1, seed=0)
    demos = rollout.generate_trajectories(
        None, venv, rollout.make_sample_until(min_episodes=2), rng=np.random.default_rng(0),
    )
    learner = SAC("MlpPolicy", venv, learning_starts=LEARNING_STARTS, seed=0)
    if args.fill:
        fill(learner, random_transitions(venv, args.fill))
    trainer = DiffusionScoreIL(demonstrations=demos, venv=venv, gen_algo=learner, seed=0,
                               expert_fit_steps=EXPERT_FIT_STEPS)
    trainer.train(trainer.gen_train_timesteps, progress_bar=False)
    profile = cProfile.Profile()
    profile.runcall(trainer.train, trainer.gen_train_timesteps, progress_bar=False)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.rows)


if __name__ == "__main__":
    main()
