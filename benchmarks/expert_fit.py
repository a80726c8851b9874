"""The expert score's held-out denoising loss along its fit, per bundled task.

    python benchmarks/expert_fit.py [--tasks ...] [--steps 10000] [--every 250]

For each task the trainer is built as the comparison harness builds it (seed 0,
the task's harness learner, today's defaults), then the expert score is fitted
in chunks of ``--every`` gradient steps, the held-out loss read after each
(fixed noise; reading it draws nothing from the trainer's generator, so the fit
is the one the trainer makes). Writes the curves and wall times to
benchmarks/results/expert-fit.json: where the loss stops improving is what the
fit's stopping rule is measured against.
"""

import argparse
import pathlib
import time

import torch as th
from common import write_result
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import DiffusionScoreIL, data
from sb3_diffusion_il.benchmark.compare import learner
from sb3_diffusion_il.benchmark.tasks import TASKS
from sb3_diffusion_il.score_net import heldout_loss

OUT = pathlib.Path(__file__).parent / "results" / "expert-fit.json"


def fit_curve(env_id: str, steps: int, every: int):
    spec = learner(env_id)
    venv = make_vec_env(env_id, n_envs=spec.n_envs, seed=0)
    trainer = DiffusionScoreIL(
        demonstrations=data.load_demonstrations(env_id), venv=venv, gen_algo=spec.build(venv, 0), seed=0,
    )
    curve, start = [], time.perf_counter()
    for done in range(every, steps + 1, every):
        trainer.scores.fit_expert(trainer.expert_data, every)
        curve.append([done, heldout_loss(trainer.expert_score_net, trainer.schedule, trainer.expert_heldout)])
    return {"n_states": len(trainer.expert_data), "n_heldout": len(trainer.expert_heldout),
            "seconds": time.perf_counter() - start, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=[t for t in TASKS if t in data.bundled_env_ids()])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=250)
    args = parser.parse_args()
    th.set_num_threads(1)
    result = {"steps": args.steps, "every": args.every, "threads": 1, "tasks": {}}
    for env_id in args.tasks:
        result["tasks"][env_id] = fit_curve(env_id, args.steps, args.every)
        print(env_id, [round(loss, 4) for _, loss in result["tasks"][env_id]["curve"][::4]], flush=True)
    write_result(OUT, result)


if __name__ == "__main__":
    main()
