"""What the learned reward says of the states where the learner's episodes end.

    python benchmarks/terminal_reward.py --env Hopper-v4 --rounds 25 --out terminal-reward-Hopper-v4.json

Whether the terminal state could stand in for the absorbing state (held forever
after a termination, as until 7 December): the learner would then be kept from
falling only if its reward were below what its other states earn. This trains DiffusionScoreIL with the
comparison harness's learner for ``--rounds`` rounds of 1,000 env steps and,
after each, evaluates ``reward_test`` (its own noise: training is unchanged)
on the round's terminal states, on the round's other states and on held-out
expert states, and prints their means and the share of terminal states whose
reward is below the round's median state's.
"""

import argparse
import pathlib

import numpy as np
import torch as th
from common import write_result
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import DiffusionScoreIL, data
from sb3_diffusion_il.benchmark import compare

RESULTS = pathlib.Path(__file__).parent / "results"


def rewards(trainer: DiffusionScoreIL, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """``reward_test`` of staying in each of ``obs``."""
    return trainer.reward_test.predict_processed(obs, acts, obs, np.ones(len(obs), dtype=bool))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v4")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="file name in benchmarks/results")
    args = parser.parse_args()
    th.set_num_threads(1)
    venv = make_vec_env(args.env, n_envs=1, seed=args.seed)
    learner = compare.learner(args.env).build(venv, args.seed)
    demonstrations = data.load_demonstrations(args.env)
    trainer = DiffusionScoreIL(demonstrations=demonstrations, venv=venv, gen_algo=learner,
                               gen_train_timesteps=compare.ROUND_STEPS, seed=args.seed)
    expert = np.concatenate([t.obs[:-1] for t in demonstrations])[::10]
    buffer = learner.replay_buffer
    rows = []
    for round_ in range(args.rounds):
        start = buffer.pos
        trainer.train_gen()
        trainer.train_learner_score()
        new = np.arange(start, buffer.pos)
        ended = new[(buffer.dones[new, 0] > 0) & (buffer.timeouts[new, 0] == 0)]
        obs, acts = buffer.next_observations[new, 0], buffer.actions[new, 0]
        states = rewards(trainer, obs, acts)
        row = {"round": round_ + 1, "steps": learner.num_timesteps, "terminations": len(ended),
               "state_reward": float(states.mean()), "expert_reward": float(rewards(
                   trainer, expert, np.zeros((len(expert),) + acts.shape[1:], dtype=acts.dtype)).mean())}
        if len(ended):
            terminal = rewards(trainer, buffer.next_observations[ended, 0], buffer.actions[ended, 0])
            row.update(terminal_reward=float(terminal.mean()),
                       terminal_below_median=float((terminal < np.median(states)).mean()))
        rows.append(row)
        print("  ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    command = f"python benchmarks/terminal_reward.py --env {args.env} --rounds {args.rounds} --out {args.out}"
    write_result(RESULTS / args.out, {"rows": rows, "command": command})


if __name__ == "__main__":
    main()
