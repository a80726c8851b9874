"""Absorbing states: episodes that the env ends early, without the bias of a zero-worth end.

When an episode ends by termination (a fall, not a time limit), a learned reward
that is mostly negative teaches the learner to end episodes early, one that is
mostly positive to prolong them, whatever the expert did. DAC (Kostrikov et al.,
2019) removes this: the episode goes on in an absorbing state, which the learned
reward scores like any other state, and the learner's values take its worth on.

Here the absorbing state is the terminal state itself, held forever, as
imitation's fixed-horizon ``seals`` tasks hold it until their horizon: staying
in it (the terminal observation, then the same again, under the last action)
costs what the learned cost says, which the learner's own terminal states and
the expert's (if its episodes end early) teach the score networks. A transition
that ends its episode by termination is worth its own reward plus that of
staying forever after, ``gamma / (1 - gamma) * r_stay``: relabelled minibatches
add it (the learner's critic does not bootstrap past a termination), and for
on-policy learners `EndWorthWrapper` pays it. Adding a constant to every reward
then adds ``constant / (1 - gamma)`` to every value, however the episode ends.
Envs that never end episodes early (imitation's ``seals/*`` tasks) train
exactly as without this.
"""

from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch as th
from imitation.rewards import reward_wrapper
from stable_baselines3.common import vec_env

# The key of the last info of an episode that SB3's VecEnvs set when a time limit ended it.
TRUNCATED = "TimeLimit.truncated"


def worth_after(reward: Any, gamma: float) -> Any:
    """What staying in the absorbing state is worth from the step after a termination on:
    ``sum_k>=1 gamma^k reward``."""
    return gamma / (1.0 - gamma) * reward


def terminated(dones: np.ndarray, infos: Sequence[Dict[str, Any]]) -> np.ndarray:
    """Which of a VecEnv step's ``dones`` are terminations, not time limits."""
    return np.array([done and not info.get(TRUNCATED, False) for done, info in zip(dones, infos)], dtype=bool)


def staying(samples: Any, rows: th.Tensor) -> Any:
    """Replay samples ``rows`` as the transitions of staying in their next state (the
    observation replaced by the next one), e.g. the absorbing state after a termination."""
    def pick(x: Any) -> Any:
        return {key: value[rows] for key, value in x.items()} if isinstance(x, dict) else x[rows]

    next_obs = pick(samples.next_observations)
    return samples._replace(observations=next_obs, actions=samples.actions[rows], next_observations=next_obs,
                            dones=samples.dones[rows], rewards=samples.rewards[rows])


class EndWorthWrapper(reward_wrapper.RewardVecEnvWrapper):
    """imitation's reward-wrapping VecEnv that also pays, at each termination, the worth of
    staying in the terminal state forever after (`worth_after` with the learner's ``gamma``),
    as on-policy learners cannot bootstrap past it.

    :param venv: the env
    :param reward_fn: the reward of a step, as imitation's wrapper takes it
    :param gamma: the learner's discount; None: pay nothing more (off-policy learners,
        whose relabelled minibatches add the worth)
    """

    def __init__(self, venv: vec_env.VecEnv, reward_fn: Callable[..., np.ndarray], gamma: Optional[float]):
        super().__init__(venv, reward_fn=reward_fn)
        self.gamma = gamma

    def step_wait(self):
        obs, rewards, dones, infos = super().step_wait()
        ended = terminated(dones, infos)
        if self.gamma is not None and ended.any():
            last = _stack([infos[i]["terminal_observation"] for i in np.flatnonzero(ended)])
            stay = self.reward_fn(last, self._actions[ended], last, np.ones(int(ended.sum()), dtype=bool))
            rewards = rewards.copy()
            rewards[ended] += worth_after(stay, self.gamma)
        return obs, rewards, dones, infos


def _stack(observations: Sequence[Any]) -> Any:
    """Single observations (arrays, or dicts of arrays) as a batch."""
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)
