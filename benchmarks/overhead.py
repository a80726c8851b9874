"""Overhead of DiffusionScoreIL + SAC over plain SAC on the true reward, per env step.

    python benchmarks/overhead.py [--envs HalfCheetah-v4 Pendulum-v1] [--steps 2000] [--repeats 2] [--fill 50000 ...] \
        [--device cpu] [--out NAME]

Both learners use SB3's default SAC settings on one env, in this one process,
alternating so that drift in the machine's speed hits both alike. Speed is
measured after ``learning_starts``, when every env step also takes a gradient
step; DiffusionScoreIL's figure includes each round's learner-score refit,
which is also timed on its own, as is expert score pretraining (once per run).
Both replay buffers start with the same ``--fill`` random-policy transitions
(each value given is a separate measurement): the relabelling cost of a round
grows with the number of distinct stored transitions its minibatches draw, so
a nearly empty buffer would flatter it.
The demonstrations are states of a random policy too: the cost's compute does
not depend on where the states come from. Figures are printed and written to
``benchmarks/results/overhead.json`` (``overhead-cuda.json`` with ``--device cuda``:
both learners, and so the score networks, on the GPU).
"""

import argparse
import pathlib
import time
from typing import Any, Callable, Dict, List

import numpy as np
import torch as th
from imitation.data import rollout, types
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from common import write_result

from sb3_diffusion_il import DiffusionScoreIL
from sb3_diffusion_il.cost import native_bfloat16

RESULTS = pathlib.Path(__file__).parent / "results"
LEARNING_STARTS = 100


def seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def random_transitions(venv: VecEnv, n: int) -> types.TransitionsWithRew:
    trajectories = rollout.generate_trajectories(
        None, venv, rollout.make_sample_until(min_timesteps=n), rng=np.random.default_rng(0),
    )
    return rollout.flatten_trajectories_with_rew(trajectories)[:n]


def fill(algo: SAC, transitions: types.TransitionsWithRew) -> None:
    """Stores ``transitions`` in the learner's replay buffer as its own rollouts would."""
    actions = algo.policy.scale_action(transitions.acts)
    for i in range(len(transitions)):
        algo.replay_buffer.add(
            transitions.obs[i : i + 1], transitions.next_obs[i : i + 1], actions[i : i + 1],
            transitions.rews[i : i + 1], transitions.dones[i : i + 1], [{}],
        )


def measure(env_id: str, steps: int, repeats: int, n_fill: int, device: str) -> Dict[str, Any]:
    """Env steps per second of both learners, the ratio of their time per step, refit and pretraining times."""
    venv = make_vec_env(env_id, n_envs=1, seed=0)
    demos = rollout.generate_trajectories(
        None, venv, rollout.make_sample_until(min_episodes=2), rng=np.random.default_rng(0),
    )
    plain = SAC("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=0), learning_starts=LEARNING_STARTS, seed=0,
                device=device)
    ours = SAC("MlpPolicy", venv, learning_starts=LEARNING_STARTS, seed=0, device=device)
    if n_fill:
        transitions = random_transitions(venv, n_fill)
        fill(plain, transitions)
        fill(ours, transitions)
    trainer = DiffusionScoreIL(demonstrations=demos, venv=venv, gen_algo=ours, seed=0)
    pretrain = seconds(lambda: trainer.pretrain_expert(progress_bar=False))

    refits: List[float] = []
    refit = trainer.train_learner_score

    def timed_refit() -> float:
        start = time.perf_counter()
        loss = refit()
        refits.append(time.perf_counter() - start)
        return loss

    trainer.train_learner_score = timed_refit  # type: ignore[method-assign]
    # One warm-up round each, covering learning_starts.
    plain.learn(trainer.gen_train_timesteps)
    trainer.train(trainer.gen_train_timesteps, progress_bar=False)
    rates: Dict[str, List[float]] = {"sac": [], "diffusion_score+sac": []}
    for _ in range(repeats):
        rates["sac"].append(steps / seconds(lambda: plain.learn(steps, reset_num_timesteps=False)))
        rates["diffusion_score+sac"].append(steps / seconds(lambda: trainer.train(steps, progress_bar=False)))
    sac, ours_rate = np.mean(rates["sac"]), np.mean(rates["diffusion_score+sac"])
    return {
        "env_id": env_id,
        "steps_per_second": {name: float(np.mean(r)) for name, r in rates.items()},
        "steps_per_second_repeats": rates,
        "overhead_ratio": float(sac / ours_rate),
        "learner_refit_seconds_per_round": float(np.mean(refits)),
        "round_steps": trainer.gen_train_timesteps,
        "replay_transitions_at_start": n_fill,
        "expert_pretrain_seconds": pretrain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v4", "Pendulum-v1"])
    parser.add_argument("--steps", type=int, default=2000, help="measured env steps per repeat (whole rounds of 1000)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fill", type=int, nargs="+", default=[50_000],
                        help="random-policy transitions in both replay buffers before measuring")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both learners train")
    parser.add_argument("--out", help="file name in benchmarks/results (default: overhead.json, overhead-cuda.json)")
    args = parser.parse_args()
    th.set_num_threads(1)
    results = []
    for env_id in args.envs:
        for n_fill in args.fill:
            r = measure(env_id, args.steps, args.repeats, n_fill, args.device)
            results.append(r)
            print(f"\n{env_id}: env steps/s over {args.repeats} x {args.steps} steps after learning starts, "
                  f"{n_fill} transitions in the replay buffers at the start")
            print(f"  plain SAC (true reward)   {r['steps_per_second']['sac']:7.1f}")
            print(f"  DiffusionScoreIL + SAC    {r['steps_per_second']['diffusion_score+sac']:7.1f}")
            print(f"  time per step, ratio      {r['overhead_ratio']:7.2f}")
            print(f"  learner-score refit       {r['learner_refit_seconds_per_round']:7.2f} s per round "
                  f"of {r['round_steps']} steps")
            print(f"  expert score pretraining  {r['expert_pretrain_seconds']:7.1f} s (once per run)")
    out = args.out or ("overhead.json" if args.device == "cpu" else f"overhead-{args.device}.json")
    command = (f"python benchmarks/overhead.py --envs {' '.join(args.envs)} --steps {args.steps} "
               f"--repeats {args.repeats} --fill {' '.join(map(str, args.fill))} --device {args.device} --out {out}")
    payload = {
        "results": results, "command": command, "threads": th.get_num_threads(), "device": device_name(args.device),
        "cost_bfloat16": native_bfloat16(th.device(args.device)),  # the default cost_precision="auto" takes it
    }
    write_result(RESULTS / out, payload)


def device_name(device: str) -> str:
    if device == "cuda":
        return th.cuda.get_device_name()
    models = [line.split(":", 1)[1].strip() for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")]
    return f"{models[0] if models else 'unknown CPU'}, {len(models)} logical cores"


if __name__ == "__main__":
    main()
