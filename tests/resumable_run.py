"""A Pendulum training run that checkpoints every round and resumes from the newest checkpoint.

Driven by ``test_reliability.py``, which kills it with SIGKILL. It prints
``start round N`` when it begins and ``round N done`` after each checkpoint.
With ``--stall-in-write K`` the K-th checkpoint write stops halfway, after
writing part of its temporary file, so the test can kill it mid-write.
"""

import argparse
import os
import pathlib
import tempfile
import time

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import DiffusionScoreIL, files, load_demonstrations
from sb3_diffusion_il.checkpoint import SaveCheckpoints, latest_checkpoint

FAST = dict(demo_batch_size=64, expert_fit_steps=50, learner_fit_steps=5, gen_train_timesteps=200, seed=0)


def stall_in_write(k: int) -> None:
    """Makes the k-th `atomic_write_bytes` write half its temporary file, then hang."""
    write = files.atomic_write_bytes
    calls = []

    def stalling(path: pathlib.Path, payload: bytes) -> None:
        calls.append(path)
        if len(calls) < k:
            return write(path, payload)
        fd, _ = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.write(fd, payload[: len(payload) // 2])
        os.fsync(fd)
        print("stalled in write", flush=True)
        time.sleep(600)

    files.atomic_write_bytes = stalling


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=pathlib.Path, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--stall-in-write", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.stall_in_write:
        stall_in_write(args.stall_in_write)
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    demos = load_demonstrations("Pendulum-v1")
    latest = latest_checkpoint(args.dir)
    if latest is None:
        sac = SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
        trainer = DiffusionScoreIL(demonstrations=demos, venv=venv, gen_algo=sac, **FAST)
    else:
        trainer = DiffusionScoreIL.load(latest, demonstrations=demos, venv=venv)
    print(f"start round {trainer.rounds_done}", flush=True)
    checkpointer = SaveCheckpoints(trainer, args.dir, every=1, keep=2)

    def callback(round_: int) -> None:
        checkpointer(round_)
        print(f"round {trainer.rounds_done} done", flush=True)

    remaining = args.rounds - trainer.rounds_done
    trainer.train(remaining * trainer.gen_train_timesteps, callback=callback, progress_bar=False)


if __name__ == "__main__":
    main()
