"""Time per state of the cost estimate, in each arithmetic the reward offers.

    python benchmarks/cost_speed.py [--dim 17] [--batches 1 8 32 256 4096] [--repeats 30]

The reward's default networks and estimator (48 network evaluations per
state) on random states of ``--dim`` coordinates (17: HalfCheetah-v4), one
thread. Each figure is the least of ``--repeats`` timings, which a busy
machine disturbs far less than a mean. A batch of 1 is what the reward-wrapped
env scores at every env step; 256 a SAC minibatch (of which a round's later
ones have only a few states not yet scored); 4,096 a block scored up front.
Each arithmetic is timed at every batch size, also below
``cost.BFLOAT16_MIN_STATES``, where the reward itself keeps float32. Prints
and writes ``benchmarks/results/cost-speed.json``.
"""

import argparse
import pathlib
import time
from typing import Dict

import gymnasium as gym
import numpy as np
import torch as th

from common import write_result

from sb3_diffusion_il import DiffusionSchedule, DiffusionScoreReward, ScoreNetwork, cost
from sb3_diffusion_il.cost import native_bfloat16

RESULTS = pathlib.Path(__file__).parent / "results" / "cost-speed.json"


def seconds_per_state(reward: DiffusionScoreReward, x: th.Tensor, repeats: int) -> float:
    calls = max(1, 4096 // len(x))  # about 4,096 states per timing
    best = float("inf")
    with th.inference_mode():
        reward.cost(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                reward.cost(x)
            best = min(best, (time.perf_counter() - start) / (calls * len(x)))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=17)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 256, 4096])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    th.set_num_threads(1)
    th.manual_seed(0)
    cost.BFLOAT16_MIN_STATES = 1
    space = gym.spaces.Box(-np.inf, np.inf, (args.dim,))
    nets = ScoreNetwork(args.dim), ScoreNetwork(args.dim)
    states = th.randn(max(args.batches), args.dim)
    microseconds: Dict[str, Dict[int, float]] = {}
    for precision in ("float32", "bfloat16"):
        reward = DiffusionScoreReward(space, space, *nets, DiffusionSchedule(1000), precision=precision)
        reward.resample_timesteps(states[:128])
        microseconds[precision] = {
            n: 1e6 * seconds_per_state(reward, states[:n], args.repeats) for n in args.batches
        }
    for n in args.batches:
        print(f"batch {n:5d}: float32 {microseconds['float32'][n]:8.1f} us/state, "
              f"bfloat16 {microseconds['bfloat16'][n]:8.1f} us/state")
    write_result(RESULTS, {
        "dim": args.dim,
        "microseconds_per_state": microseconds,
        "evaluations_per_state": reward.evaluations_per_sample,
        "bfloat16_native": native_bfloat16(th.device("cpu")),
        "command": f"python benchmarks/cost_speed.py --dim {args.dim} --batches {' '.join(map(str, args.batches))} "
                   f"--repeats {args.repeats}",
    })


if __name__ == "__main__":
    main()
