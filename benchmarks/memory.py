"""Resident memory of a DiffusionScoreIL trainer with a 1M-state learner buffer, over 200 rounds.

    python benchmarks/memory.py [--env HalfCheetah-v4] [--buffer 1000000] [--rounds 200]

Each round adds ``2 * buffer / rounds`` learner states (so the buffer is
full halfway, and the second half of the rounds replaces its oldest rows),
refits the learner score and scores 4,096 states, as a training round does,
without stepping the environment (its memory is SB3's, not ours). Prints
resident memory (RSS) before the trainer exists, after it is built, after
the first round, when the buffer is first full and at the end (growth over
the second half is what the trainer adds once its buffer is full), and writes
the figures to ``benchmarks/results/memory.json``.
"""

import argparse
import pathlib

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from common import rss_mib, write_result

from sb3_diffusion_il import DiffusionScoreIL

RESULTS = pathlib.Path(__file__).parent / "results" / "memory.json"
SCORED_STATES = 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--buffer", type=int, default=1_000_000, help="learner_buffer_size")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    th.set_num_threads(1)
    rng = np.random.default_rng(0)

    venv = make_vec_env(args.env, n_envs=1, seed=0)
    dim = venv.observation_space.shape[0]
    demos = rng.normal(size=(5000, dim)).astype(np.float32)
    rss = {"before_trainer": rss_mib()}
    # A small replay buffer: the learner's own memory is not what is measured.
    learner = SAC("MlpPolicy", venv, buffer_size=1000, seed=0)
    trainer = DiffusionScoreIL(
        demonstrations=demos, venv=venv, gen_algo=learner, learner_buffer_size=args.buffer,
        expert_fit_steps=100, seed=0,
    )
    trainer.pretrain_expert(progress_bar=False)
    rss["trainer_built"] = rss_mib()
    per_round = 2 * args.buffer // args.rounds
    for r in range(args.rounds):
        trainer.learner_buffer.add(rng.normal(0.5, 1.0, size=(per_round, dim)).astype(np.float32))
        trainer.train_learner_score()
        with th.no_grad():
            trainer.reward_train.base.cost(trainer.learner_buffer.sample(SCORED_STATES))
        if r == 0:
            rss["after_round_1"] = rss_mib()
        if trainer.learner_buffer.full and "buffer_first_full" not in rss:
            rss["buffer_first_full"] = rss_mib()
    rss["after_last_round"] = rss_mib()
    result = {
        "env_id": args.env,
        "feature_dim": dim,
        "learner_buffer_size": args.buffer,
        "learner_buffer_rows": len(trainer.learner_buffer),
        "learner_buffer_mib": trainer.learner_buffer.rows.nbytes / 2**20,
        "rounds": args.rounds,
        "rss_mib": rss,
        "growth_once_full_mib": rss["after_last_round"] - rss["buffer_first_full"],
        "command": f"python benchmarks/memory.py --env {args.env} --buffer {args.buffer} --rounds {args.rounds}",
    }
    write_result(RESULTS, result)


if __name__ == "__main__":
    main()
