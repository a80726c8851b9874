"""How far an expert's learning-curve evaluations scatter when the policy does not change.

    python benchmarks/evaluation_noise.py --env seals/Ant-v1 --expert /work/experts/seals__Ant-v1 \
        --groups 10 --out evaluation-noise-seals__Ant-v1.json

The expert checkpoint in ``--expert`` (as ``benchmark.experts`` leaves it) is
evaluated ``--groups`` times as the learning curve evaluates it (`experts.evaluation_returns`: 5 deterministic
episodes, each group from its own seed). Every spread among the group means is
measurement noise, the floor under the flatness bar of the bundled experts
(every evaluation over the last tenth of training within ``FLAT`` of the
demonstrations' return, `tests/test_experts.py`): the figures are the group
means, their range relative to the mean of all episodes, and how many groups
fall outside ``FLAT`` of it.
"""

import argparse
import pathlib

import numpy as np

from common import write_result
from reward_ranking import load_expert

from sb3_diffusion_il.benchmark import experts
from sb3_diffusion_il.benchmark.tasks import FLAT

RESULTS = pathlib.Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True)
    parser.add_argument("--expert", type=pathlib.Path, required=True, help="the expert's work dir")
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--out", required=True, help="file name under benchmarks/results")
    args = parser.parse_args()
    model = load_expert(args.env, args.expert)
    groups = [experts.evaluation_returns(model, args.env, seed=10_000 + group).tolist() for group in range(args.groups)]
    means = np.array([np.mean(group) for group in groups])
    overall = float(np.mean(groups))
    write_result(RESULTS / args.out, {
        "env_id": args.env,
        "expert_timesteps": int(model.num_timesteps),
        "episodes_per_evaluation": experts.EVAL_EPISODES,
        "episode_returns": groups,
        "mean_return": overall,
        "episode_std": float(np.std(groups)),
        "evaluation_means": means.tolist(),
        "evaluation_range_relative": [float(means.min() / overall - 1), float(means.max() / overall - 1)],
        "evaluations_outside_flat": int(np.sum(np.abs(means - overall) > FLAT * abs(overall))),
        "command": "python benchmarks/evaluation_noise.py " + " ".join(
            f"--{name} {value}" for name, value in vars(args).items()),
    })


if __name__ == "__main__":
    main()
