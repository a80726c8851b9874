"""Demonstrations of gymnasium's own ``Hopper-v4`` and ``Walker2d-v4``, whose episodes end when the body falls.

imitation's ``seals/Hopper-v1`` is gymnasium's ``Hopper-v4`` with the x position
kept in the observation and the fall not ending the episode (``seals.mujoco``);
the same for Walker2d. The same states under the same actions follow the same
dynamics, so each bundled episode of the seals expert is an episode of
gymnasium's task up to its first state that gymnasium calls unhealthy, where
gymnasium ends it: x is left out of each observation, and the step that ends it
pays the healthy reward that gymnasium pays on every step of a terminating
episode (seals pays it only while healthy).

Run ``python -m sb3_diffusion_il.benchmark.experts Hopper-v4`` (the seals task's
demonstrations must be bundled).
"""

import json
import pathlib
from typing import Any, Dict, List

import gymnasium as gym
import numpy as np
from imitation.data import types

from sb3_diffusion_il import data, files


def healthy_prefix(trajectory: types.TrajectoryWithRew, env: gym.Env) -> int:
    """How many steps of a seals episode the terminating env runs: up to and including the
    first step into a state ``env`` (gymnasium's MuJoCo env, unwrapped) calls unhealthy."""
    nq, nv = env.model.nq, env.model.nv
    for step, obs in enumerate(trajectory.obs[1:], start=1):
        env.set_state(obs[:nq], obs[nq:nq + nv])
        if not env.is_healthy:
            return step
    return len(trajectory.acts)


def as_ended_early(trajectory: types.TrajectoryWithRew, env: gym.Env) -> types.TrajectoryWithRew:
    """A seals episode as gymnasium's terminating version of its task runs it (see the module)."""
    n = healthy_prefix(trajectory, env)
    rews = trajectory.rews[:n].copy()
    if n < len(trajectory.acts):  # ended by the fall: gymnasium pays the healthy reward on this step too
        rews[-1] += env._healthy_reward
    return types.TrajectoryWithRew(
        obs=trajectory.obs[: n + 1, 1:], acts=trajectory.acts[:n], infos=None, terminal=True, rews=rews,
    )


def make_demonstrations(env_id: str, source_id: str, out_dir: pathlib.Path, random: List[types.TrajectoryWithRew],
                        **recorded: Any) -> Dict[str, Any]:
    """Writes ``env_id``'s demonstrations and manifest, made from ``source_id``'s bundled ones.

    :param random: episodes of random actions on ``env_id``, for the manifest's random return
    :param recorded: more of the manifest (the command, the versions)
    """
    env = gym.make(env_id).unwrapped
    expert = [as_ended_early(t, env) for t in data.load_demonstrations(source_id)]
    env.close()
    returns = np.array([t.rews.sum() for t in expert])
    random_returns = np.array([t.rews.sum() for t in random])
    sha256 = data.save_trajectories(data.demo_path(env_id, out_dir), expert)
    manifest = {
        "env_id": env_id,
        "n_episodes": len(expert),
        "expert_return_mean": float(returns.mean()),
        "expert_return_std": float(returns.std()),
        "random_return_mean": float(random_returns.mean()),
        "random_return_std": float(random_returns.std()),
        "recorded_from": source_id,
        "recorded_from_sha256": data.expert_stats(source_id)["sha256"],
        "episode_lengths": [len(t.acts) for t in expert],
        "fixed_horizon": False,
        "sha256": sha256,
        **recorded,
    }
    files.atomic_write_bytes(data.manifest_path(env_id, out_dir), json.dumps(manifest, indent=1).encode())
    return manifest
