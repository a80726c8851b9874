"""What is diffused: the feature of a transition, decided once for a task.

A `Features` object holds the conditioning (state, state and action, or state
and next state), the state coordinates kept (all but those left out), which
feature coordinates are binary, and the standardisation the score networks
apply (the expert's per-coordinate mean and std). Everything that turns data
into diffusion inputs goes through it: the demonstrations, the learner's
rollouts, and the reward's transitions.
"""

import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common import vec_env

from sb3_diffusion_il import data, flatten, positions, settings

# Demonstration values beyond this, where the observation space is unbounded, draw a warning.
HUGE_OBSERVATION = 1e6


class Features:
    """The diffusion input of a task's transitions.

    :param venv: the task's environment (its spaces, and its MuJoCo model for
        ``drop_state_coordinates="unbounded_positions"``)
    :param conditioning: one of ``settings.CONDITIONINGS``
    :param drop_state_coordinates: coordinates of the flattened observation left out,
        or ``"unbounded_positions"`` (`positions.unbounded_positions`)
    """

    def __init__(
        self, venv: vec_env.VecEnv, conditioning: str = "state", drop_state_coordinates: Union[Sequence[int], str] = (),
    ):
        data.check_conditioning(conditioning)
        flatten.check_space(venv.observation_space, "Observation")
        if conditioning == "state_action":
            flatten.check_space(venv.action_space, "Action")
        self.observation_space, self.action_space = venv.observation_space, venv.action_space
        self.conditioning = conditioning
        if drop_state_coordinates == settings.UNBOUNDED_POSITIONS:
            drop_state_coordinates = positions.unbounded_positions(venv)
        self.dropped = tuple(drop_state_coordinates)
        self.state_coordinates = _kept_coordinates(self.dropped, flatten.flat_dim(venv.observation_space))

    def of(self, demonstrations: data.AnyDemonstrations, check_bounds: bool = False) -> np.ndarray:
        """The features of demonstrations (or of any trajectories or transitions of the task), raw.

        :param check_bounds: warn about states outside a ``Box`` observation space's bounds
        """
        # Actions are checked against the action space only where they are diffused.
        action_space = self.action_space if self.conditioning == "state_action" else None
        arrays = data.to_arrays(demonstrations, self.observation_space, action_space)
        if check_bounds and isinstance(self.observation_space, spaces.Box):
            _warn_if_out_of_bounds(arrays.obs, self.observation_space)
        return arrays.features(self.conditioning, self.state_coordinates)

    def binary(self) -> np.ndarray:
        """Which feature coordinates are one-hot or binary (see `flatten`)."""
        obs = flatten.binary_coordinates(self.observation_space)
        obs = obs if self.state_coordinates is None else obs[self.state_coordinates]
        second = {"state": [], "state_action": [flatten.binary_coordinates(self.action_space)],
                  "state_next_state": [obs]}[self.conditioning]
        return np.concatenate([obs, *second])

    def normalization(self, expert: th.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """The mean and std the score networks standardise features with: the expert
        features' own, except that binary coordinates map {0, 1} to {-1, 1} whatever the
        expert's spread (one it never changes would otherwise be scaled up without bound)."""
        mean, std = expert.mean(0).cpu().numpy(), expert.std(0).cpu().numpy()
        binary = self.binary()
        return np.where(binary, 0.5, mean), np.where(binary, 0.5, np.maximum(std, 0.0))


def _kept_coordinates(drop: Sequence[int], dim: int) -> Optional[List[int]]:
    """The state coordinates diffused when ``drop`` are left out (None: all of them)."""
    bad = [i for i in drop if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < dim]
    if bad:
        raise ValueError(
            f"drop_state_coordinates={list(drop)}: {bad} are not coordinates of the {dim}-dimensional "
            f"(flattened) observation; give indices from 0 to {dim - 1}.",
        )
    dropped = set(drop)
    kept = [i for i in range(dim) if i not in dropped]
    if not kept:
        raise ValueError(f"drop_state_coordinates={list(drop)} leaves out every coordinate: nothing would be diffused.")
    return kept if drop else None


def _warn_if_out_of_bounds(obs: np.ndarray, space: spaces.Box) -> None:
    """:param obs: flattened states ``(n, prod(space.shape))``"""
    # Where the space is unbounded, "huge" stands in for its bound; float64, since
    # float32 bounds near float32's largest value (CartPole's) overflow the slack below.
    low = np.where(np.isfinite(space.low), space.low, -HUGE_OBSERVATION).astype(np.float64).reshape(-1)
    high = np.where(np.isfinite(space.high), space.high, HUGE_OBSERVATION).astype(np.float64).reshape(-1)
    # Relative slack: float32 rounding of values that sit on a bound.
    outside = (obs < low - 1e-5 * (1 + np.abs(low))) | (obs > high + 1e-5 * (1 + np.abs(high)))
    if outside.any():
        warnings.warn(
            f"{int(outside.sum())} demonstration state values lie outside the observation "
            f"space's bounds or beyond +-{HUGE_OBSERVATION:g} where it has none (largest |x| = "
            f"{float(np.abs(obs).max()):.3g}): check that they come from this task, in the "
            "units the env reports (not normalised or rescaled).",
            stacklevel=5,
        )
