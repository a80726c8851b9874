"""Absorbing states: episodes that the env ends early, without the bias of a zero-worth end.

When an episode ends by termination (a fall, not a time limit), a learned reward
that is mostly negative teaches the learner to end episodes early, one that is
mostly positive to prolong them, whatever the expert did. DAC (Kostrikov et al.,
2019) removes this: the episode goes on in an absorbing state, which the learned
reward scores like any other state, and the learner's values take its worth on.

Here the features get one more coordinate, the absorbing indicator (0 for the
env's states), from the first termination seen (in the demonstrations, or else
in the learner's episodes); each episode that ended by termination adds one
absorbing feature (the indicator 1, every other coordinate at the expert's
mean), so both score networks learn how often their data reaches it, and its
cost is learned, not chosen. A transition that ends its episode by termination
is then worth its own reward plus the absorbing state's forever after,
``gamma / (1 - gamma) * r_abs``: relabelled minibatches add it (the learner's
critic does not bootstrap past a termination), and for on-policy learners the
env wrapper `EndWorthWrapper` pays it. Adding a constant to every reward
then adds ``constant / (1 - gamma)`` to every value, whenever the episode ends.
Envs that never terminate early (imitation's ``seals/*`` tasks) never get the
coordinate, and train exactly as without this.
"""

from typing import Any, Callable, Dict, Optional, Sequence, Union

import numpy as np
import torch as th
from imitation.data import types
from imitation.rewards import reward_wrapper
from stable_baselines3.common import vec_env

# The key of an episode's last info that SB3's VecEnvs set when a time limit ended it.
TRUNCATED = "TimeLimit.truncated"


def horizon(venv: vec_env.VecEnv) -> Optional[int]:
    """The env's time limit (gymnasium's ``max_episode_steps``), or None when it has none or it is unknown."""
    try:
        spec = venv.get_attr("spec", indices=[0])[0]
    except AttributeError:
        return None
    return getattr(spec, "max_episode_steps", None)


def ended_by_termination(trajectory: types.Trajectory, time_limit: Optional[int]) -> bool:
    """Whether an episode (or the fragment that ends one) was ended by the env, not a time limit.

    The last info says so where the trajectory keeps infos (SB3's VecEnvs set
    ``TimeLimit.truncated``); otherwise an episode shorter than ``time_limit``, or
    any that ends where there is no time limit, ended by termination.
    """
    if not trajectory.terminal:
        return False
    last_info = trajectory.infos[-1] if trajectory.infos is not None and len(trajectory.infos) else {}
    if TRUNCATED in last_info:
        return not last_info[TRUNCATED]
    return time_limit is None or len(trajectory.acts) < time_limit


def terminations(demonstrations: Any, time_limit: Optional[int]) -> int:
    """How many episodes of ``demonstrations`` ended by termination: 0 unless they are trajectories."""
    if not isinstance(demonstrations, Sequence) or not demonstrations:
        return 0
    if not all(isinstance(t, types.Trajectory) for t in demonstrations):
        return 0
    return sum(ended_by_termination(t, time_limit) for t in demonstrations)


def with_indicator(x: Union[np.ndarray, th.Tensor], value: float = 0.0) -> Union[np.ndarray, th.Tensor]:
    """Features with the absorbing indicator appended as their last coordinate."""
    if isinstance(x, th.Tensor):
        return th.cat([x, th.full((len(x), 1), value, dtype=x.dtype, device=x.device)], dim=1)
    return np.concatenate([x, np.full((len(x), 1), value, dtype=x.dtype)], axis=1)


def worth_after(reward: float, gamma: float) -> float:
    """What the absorbing state is worth from the step after a termination on: ``sum_k>=1 gamma^k r_abs``."""
    return gamma / (1.0 - gamma) * reward


def terminated(dones: np.ndarray, infos: Sequence[Dict[str, Any]]) -> np.ndarray:
    """Which of a VecEnv step's ``dones`` are terminations, not time limits."""
    return np.array([done and not info.get(TRUNCATED, False) for done, info in zip(dones, infos)], dtype=bool)


class EndWorthWrapper(reward_wrapper.RewardVecEnvWrapper):
    """imitation's reward-wrapping VecEnv that also pays, at each termination, the absorbing
    state's worth after it (``end_worth()``), as on-policy learners cannot bootstrap past it.

    :param venv: the env
    :param reward_fn: the reward of a step, as imitation's wrapper takes it
    :param end_worth: the absorbing state's worth after a termination, at the time of the step
    """

    def __init__(self, venv: vec_env.VecEnv, reward_fn: Callable[..., np.ndarray], end_worth: Callable[[], float]):
        super().__init__(venv, reward_fn=reward_fn)
        self.end_worth = end_worth

    def step_wait(self):
        obs, rewards, dones, infos = super().step_wait()
        ended = terminated(dones, infos)
        if ended.any():
            rewards = rewards + ended * self.end_worth()
        return obs, rewards, dones, infos
