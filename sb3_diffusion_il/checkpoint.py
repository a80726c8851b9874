"""Checkpoints of a training run: the random-number states, and saving every N rounds.

A checkpoint is one file written by ``DiffusionScoreIL.save`` (score networks,
their optimisers, the learner-state buffer, the round counter, the random
states below and the SB3 learner with its replay buffer). Files are written
under a temporary name and renamed, so a run killed at any moment leaves every
``round_*.pt`` file whole.
"""

import pathlib
import random
import re
from typing import Any, Dict, Optional

import numpy as np
import torch as th
from imitation.data import types
from imitation.util import util

CHECKPOINT_PATTERN = re.compile(r"round_(\d+)\.pt")


def global_rng_state() -> Dict[str, Any]:
    """The process-wide random states SB3 draws from (policy noise, replay sampling)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": th.get_rng_state(),
        "numpy": [name, th.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def set_global_rng_state(state: Dict[str, Any]) -> None:
    """Restores what `global_rng_state` returned."""
    th.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_path(directory: types.AnyPath, round_: int) -> pathlib.Path:
    return util.parse_path(directory) / f"round_{round_:06d}.pt"


def list_checkpoints(directory: types.AnyPath) -> Dict[int, pathlib.Path]:
    """The complete checkpoints in ``directory`` by round (temporary files are ignored)."""
    directory = util.parse_path(directory)
    if not directory.is_dir():
        return {}
    matches = ((CHECKPOINT_PATTERN.fullmatch(p.name), p) for p in directory.iterdir())
    return dict(sorted((int(m.group(1)), p) for m, p in matches if m))


def latest_checkpoint(directory: types.AnyPath) -> Optional[pathlib.Path]:
    """The checkpoint of the latest round in ``directory``, or None when there is none."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[max(checkpoints)] if checkpoints else None


class CheckpointCallback:
    """A ``train(callback=...)`` that saves the trainer every ``every`` rounds, keeping the newest ``keep``.

    Resume with ``DiffusionScoreIL.load(latest_checkpoint(directory), ...)``.

    :param trainer: the ``DiffusionScoreIL`` to save
    :param directory: where ``round_NNNNNN.pt`` files go
    :param every: save after every this many rounds
    :param keep: how many of the newest checkpoints to keep; older ones are deleted
        only after a newer one is completely written
    """

    def __init__(self, trainer: Any, directory: types.AnyPath, every: int = 1, keep: int = 2):
        if every < 1 or keep < 1:
            raise ValueError(f"every={every} and keep={keep} must both be at least 1.")
        self.trainer = trainer
        self.directory = util.parse_path(directory)
        self.every = every
        self.keep = keep

    def __call__(self, round_: int) -> None:
        done = self.trainer.rounds_done
        if done % self.every:
            return
        self.trainer.save(checkpoint_path(self.directory, done))
        # Temporary files of a write that was killed midway are never renamed.
        for stale in self.directory.glob(".round_*.pt.*"):
            stale.unlink()
        checkpoints = list_checkpoints(self.directory)
        for old in sorted(checkpoints)[: -self.keep]:
            checkpoints[old].unlink()
