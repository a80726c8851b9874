"""Soak run: many short rounds on Pendulum-v1, watching resident memory and non-finite values.

    python benchmarks/soak.py [--rounds 200] [--round-steps 100]

Prints resident memory (RSS) at the start and end of training and the number
of non-finite values among each round's logged costs and losses (the trainer
stops at the first non-finite cost, loss or reward, so a finished run has
seen none there). Writes the figures to ``benchmarks/results/soak.json``.
"""

import argparse
import math
import pathlib
import time

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from common import rss_mib, write_result

from sb3_diffusion_il import DiffusionScoreIL, load_demonstrations

RESULTS = pathlib.Path(__file__).parent / "results" / "soak.json"
WATCHED = ("diffusion/cost_learner", "diffusion/cost_expert", "diffusion/learner_loss", "diffusion/relabel_cost_mean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--round-steps", type=int, default=100, help="learner env steps per round")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    th.set_num_threads(1)

    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    learner = SAC("MlpPolicy", venv, learning_rate=1e-3, ent_coef="auto_0.1", seed=0)
    trainer = DiffusionScoreIL(
        demonstrations=load_demonstrations("Pendulum-v1"), venv=venv, gen_algo=learner,
        gen_train_timesteps=args.round_steps, seed=0,
    )
    trainer.pretrain_expert(progress_bar=False)
    rss = {"start": rss_mib()}
    non_finite = 0

    def watch(round_: int) -> None:
        nonlocal non_finite
        values = trainer.logger.default_logger.name_to_value
        non_finite += sum(1 for key in WATCHED if key in values and not math.isfinite(values[key]))
        if round_ == 9:
            rss["after_10_rounds"] = rss_mib()

    start = time.perf_counter()
    trainer.train(args.rounds * args.round_steps, callback=watch)
    rss["end"] = rss_mib()
    result = {
        "rounds": trainer.rounds_done,
        "round_steps": args.round_steps,
        "rss_mib": rss,
        "non_finite_values": non_finite,
        "seconds": time.perf_counter() - start,
        "command": f"python benchmarks/soak.py --rounds {args.rounds} --round-steps {args.round_steps}",
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()
