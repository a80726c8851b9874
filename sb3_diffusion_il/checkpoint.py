"""Checkpoints of a training run: writing and reading them, the random-number states, saving every N rounds.

A checkpoint is one file written by ``DiffusionScoreIL.save`` (the settings,
score networks, their optimisers, the learner-state buffer, the round counter,
the random states below and the SB3 learner with its replay buffer). Files are
written under a temporary name and renamed, so a run killed at any moment
leaves every ``round_*.pt`` file whole.
"""

import hashlib
import importlib
import io
import pathlib
import random
import re
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch as th
from imitation.data import types
from imitation.util import util
from stable_baselines3.common import base_class, vec_env
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_diffusion_il import files, relabel
from sb3_diffusion_il.score_net import ScoreNetwork
from sb3_diffusion_il.settings import Settings

CHECKPOINT_PATTERN = re.compile(r"round_(\d+)\.pt")
# Version of the file layout; `read` refuses others, but for format 2 (sb3-diffusion-il
# 0.1.0), whose settings `_settings_of_format_2` reads where this version can resume them.
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (2, CHECKPOINT_FORMAT)
# The commit of sb3-diffusion-il 0.1.0, the last to write format 2.
RELEASE_0_1_0 = "cced7ef"
# Options 0.1.0 had that this version has no more: the value each now always has.
REMOVED_SETTINGS = {
    "learner_refit": "fresh", "saturation_states": "newest", "reward_normalization": "mean_std",
    "feature_std_floor": 0.0,
}
# Settings the saved score networks were fitted with, which a resumed run cannot change.
NETWORK_SETTINGS = ("conditioning", "drop_state_coordinates", "diffusion_steps", "score_net_kwargs")
# The trainer's own arguments a checkpoint records beside its settings.
TRAINER_ARGUMENTS = ("demo_batch_size", "gen_train_timesteps", "seed")


def write(path: types.AnyPath, state: Dict[str, Any], venv: vec_env.VecEnv) -> None:
    """Writes a trainer's ``state`` to ``path`` atomically, with the format and ``venv``'s spaces."""
    files.check_writable(util.parse_path(path))  # before the work of serialising
    buf = io.BytesIO()
    th.save({"format": CHECKPOINT_FORMAT, "spaces": space_signature(venv), **state}, buf)
    files.atomic_write_bytes(util.parse_path(path), buf.getvalue())


def read(path: types.AnyPath, venv: vec_env.VecEnv) -> Dict[str, Any]:
    """The state `write` wrote to ``path``; raises unless it is of this format and ``venv``'s task."""
    path = util.parse_path(path)
    try:
        state = th.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable DiffusionScoreIL checkpoint ({e}).") from e
    if state.get("format") not in READABLE_FORMATS:
        raise ValueError(
            f"{path} has checkpoint format {state.get('format')}, this version reads formats "
            f"{list(READABLE_FORMATS)}: resume it with the version of sb3-diffusion-il that wrote it.",
        )
    if state["spaces"] != space_signature(venv):
        raise ValueError(
            f"{path} was saved for spaces {state['spaces']}, but venv has "
            f"{space_signature(venv)}: load it with the task it was trained on.",
        )
    return state


def restore_generator(generator: th.Generator, state: th.Tensor, saved_device: str) -> None:
    """Sets a generator saved on ``saved_device``; on another kind of device, whose
    generator has another algorithm and state, seeds it from the saved state instead."""
    if generator.device.type == saved_device:
        generator.set_state(state)
    else:
        digest = hashlib.sha256(state.numpy().tobytes()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def space_signature(venv: vec_env.VecEnv) -> Dict[str, str]:
    return {"observation_space": str(venv.observation_space), "action_space": str(venv.action_space)}


def learner_state(gen_algo: base_class.BaseAlgorithm) -> Dict[str, Any]:
    """The SB3 learner as bytes of its own ``save`` (and ``save_replay_buffer``) format."""
    model = io.BytesIO()
    gen_algo.save(model)
    state = {"class": f"{type(gen_algo).__module__}:{type(gen_algo).__qualname__}", "model": model.getvalue()}
    if isinstance(gen_algo, OffPolicyAlgorithm):
        replay = io.BytesIO()
        with relabel.unpatched(gen_algo.replay_buffer):
            gen_algo.save_replay_buffer(replay)
        state["replay_buffer"] = replay.getvalue()
    return state


def restore_learner(state: Dict[str, Any], venv: vec_env.VecEnv) -> base_class.BaseAlgorithm:
    module, _, name = state["class"].partition(":")
    algo_cls = getattr(importlib.import_module(module), name)
    gen_algo = algo_cls.load(io.BytesIO(state["model"]), env=venv)
    if "replay_buffer" in state:
        gen_algo.load_replay_buffer(io.BytesIO(state["replay_buffer"]))
    return gen_algo


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


class SaveCheckpoints:
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


def trainer_state(trainer: Any, include_learner: bool = True) -> Dict[str, Any]:
    """Everything `load_trainer` needs to resume ``trainer`` (a ``DiffusionScoreIL``) where it stopped."""
    return {
        # reward_std as resolved at construction: "auto" would follow the learner's temperature of today.
        "settings": {**trainer.settings.to_dict(), "reward_std": trainer.reward_std},
        "trainer": {name: getattr(trainer, name) for name in TRAINER_ARGUMENTS},
        "expert_config": trainer.expert_score_net.config(),
        "learner_config": trainer.learner_score_net.config(),
        "expert_state": trainer.expert_score_net.state_dict(),
        "learner_state": trainer.learner_score_net.state_dict(),
        "expert_opt": trainer.scores.expert_opt.state_dict(),
        "learner_opt": trainer.scores.learner_opt.state_dict(),
        "learner_buffer": trainer.learner_buffer.state_dict(),
        # The round's reward, so that reward_train and reward_test are the trained ones after a load.
        "reward": {"scale": trainer.reward_train.scale, **dict(trainer.reward_train.base.named_buffers(recurse=False))},
        "copy_expert_into_learner": trainer._copy_expert_into_learner,
        "round": trainer._global_step,
        "generator": trainer.generator.get_state(),
        "generator_device": trainer.generator.device.type,
        "global_rng": global_rng_state(),
        "learner": learner_state(trainer.gen_algo) if include_learner else None,
    }


def load_trainer(cls: type, path: types.AnyPath, *, venv: vec_env.VecEnv,
                 gen_algo: Optional[base_class.BaseAlgorithm] = None, **kwargs: Any) -> Any:
    """The trainer of class ``cls`` saved at ``path``, ready to continue training.

    :param venv: an environment of the task the checkpoint was made on
    :param gen_algo: the learner; when None, the one saved (with its replay buffer), on ``venv``
    :param kwargs: the trainer's other arguments (``demonstrations``, ``custom_logger``, ...)
        and settings that override the saved ones
    """
    state = read(path, venv)
    if gen_algo is None:
        if state["learner"] is None:
            raise ValueError(f"{path} was saved without the learner: pass gen_algo.")
        gen_algo = restore_learner(state["learner"], venv)
    if state["format"] == 2:
        saved, arguments = _settings_of_format_2(state["settings"], path)
    else:
        saved, arguments = state["settings"], state["trainer"]
    nets = []
    for name in ("expert", "learner"):
        net = ScoreNetwork(**state[f"{name}_config"])
        net.load_state_dict(state[f"{name}_state"])
        nets.append(net)
    saved_settings = Settings.from_dict(saved)
    settings, as_data = saved_settings.__dict__, saved_settings.to_dict()
    for name in NETWORK_SETTINGS:
        if name in kwargs and Settings(**{name: kwargs[name]}).to_dict()[name] != as_data[name]:
            raise ValueError(
                f"{name}={kwargs[name]!r} differs from {path}'s {settings[name]!r}: the saved score networks "
                f"were fitted with it. Load without {name}, or start a new run to change it.",
            )
    trainer = cls(venv=venv, gen_algo=gen_algo, expert_score_net=nets[0], learner_score_net=nets[1],
                  **{**settings, **arguments, **kwargs})
    trainer.scores.expert_opt.load_state_dict(state["expert_opt"])
    trainer.scores.learner_opt.load_state_dict(state["learner_opt"])
    trainer.learner_buffer.load_state_dict(state["learner_buffer"])
    if "reward" in state:  # format 2 did not save it
        reward = dict(state["reward"])
        trainer.reward_train.scale = reward.pop("scale")
        trainer.reward_train.base.load_state_dict(reward, strict=False)
    trainer._copy_expert_into_learner = state["copy_expert_into_learner"]
    trainer._global_step = state["round"]
    # Random states last: building the trainer above draws from them.
    restore_generator(trainer.generator, state["generator"], state.get("generator_device", "cpu"))
    set_global_rng_state(state["global_rng"])
    return trainer


def _settings_of_format_2(saved: Dict[str, Any], path: types.AnyPath) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The settings and trainer arguments of a checkpoint of sb3-diffusion-il 0.1.0 (format 2).

    Settings older than the options themselves take the behaviour they were trained with
    (the plain -c, every coordinate, the warm refit); a checkpoint that needs an option
    this version no longer has is refused, naming the version that resumes it.
    """
    saved = {"reward_saturation": None, "drop_state_coordinates": (), "learner_refit": "warm", **saved}
    for name, kept in REMOVED_SETTINGS.items():
        value = saved.pop(name, kept)
        if value != kept:
            raise ValueError(
                f"{path} was trained by sb3-diffusion-il 0.1.0 with {name}={value!r}, which this version no "
                f"longer has (it always uses {kept!r}): resume it with sb3-diffusion-il 0.1.0 (`pip install -e .` "
                f"in a checkout of its commit, {RELEASE_0_1_0}), or start a new run.",
            )
    arguments = {name: saved.pop(name) for name in TRAINER_ARGUMENTS}
    return saved, arguments
