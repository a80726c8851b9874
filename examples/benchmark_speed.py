"""Env steps per second of DiffusionScoreIL + SAC against plain SAC on the true reward.

    python examples/benchmark_speed.py [--env HalfCheetah-v4] [--steps 2000] [--repeats 2]

Both learners use SB3's default SAC settings on one env, in this one process,
alternating so that drift in the machine's speed hits both alike. Speed is
measured after ``learning_starts``, when every env step also takes a gradient
step. Expert score pretraining (once per run) is timed separately. The
demonstrations are states of a random policy: the cost's compute does not
depend on where the states come from.
"""

import argparse
import time

import numpy as np
from imitation.data import rollout
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import DiffusionScoreIL

LEARNING_STARTS = 100


def steps_per_second(learn, n_steps: int) -> float:
    start = time.perf_counter()
    learn(n_steps)
    return n_steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--steps", type=int, default=2000, help="measured env steps per repeat (whole rounds of 1000)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    venv = make_vec_env(args.env, n_envs=1, seed=0)
    demos = rollout.generate_trajectories(
        None, venv, rollout.make_sample_until(min_episodes=2), rng=np.random.default_rng(0),
    )
    plain = SAC("MlpPolicy", make_vec_env(args.env, n_envs=1, seed=0), learning_starts=LEARNING_STARTS, seed=0)
    ours = SAC("MlpPolicy", venv, learning_starts=LEARNING_STARTS, seed=0)
    # Default rounds: 1,000 env steps, then a learner-score refit.
    trainer = DiffusionScoreIL(demonstrations=demos, venv=venv, gen_algo=ours, seed=0)
    pretrain_seconds = -time.perf_counter()
    trainer.pretrain_expert(progress_bar=False)
    pretrain_seconds += time.perf_counter()

    # One warm-up round each, covering learning_starts.
    plain.learn(trainer.gen_train_timesteps)
    trainer.train(trainer.gen_train_timesteps, progress_bar=False)
    rates = {"sac": [], "diffusion_score+sac": []}
    for _ in range(args.repeats):
        rates["sac"].append(steps_per_second(lambda n: plain.learn(n, reset_num_timesteps=False), args.steps))
        rates["diffusion_score+sac"].append(
            steps_per_second(lambda n: trainer.train(n, progress_bar=False), args.steps),
        )
    sac, ours_rate = np.mean(rates["sac"]), np.mean(rates["diffusion_score+sac"])
    print(f"\n{args.env}: env steps/s over {args.repeats} x {args.steps} steps after learning starts")
    print(f"  plain SAC (true reward)  {sac:7.1f}   {rates['sac']}")
    print(f"  DiffusionScoreIL + SAC   {ours_rate:7.1f}   {rates['diffusion_score+sac']}")
    print(f"  slowdown                 {sac / ours_rate:7.2f}x  (includes each round's learner-score refit)")
    print(f"  expert score pretraining {pretrain_seconds:7.1f} s (once per run)")


if __name__ == "__main__":
    main()
