"""Absorbing states: episodes that the env ends early, without the bias of a zero-worth end.

When an episode ends by termination (a fall, not a time limit), a learned reward
that is mostly negative teaches the learner to end episodes early, one that is
mostly positive to prolong them, whatever the expert did. DAC (Kostrikov et al.,
2019) removes this: the episode goes on in an absorbing state, a state of its
own that the learned reward scores like any other, and the learner's values
take its worth on.

A transition that ends its episode by termination is worth its own reward plus
that of staying absorbed forever after, ``gamma / (1 - gamma) * r_stay``:
relabelled minibatches add it (the learner's critic does not bootstrap past a
termination), and for on-policy learners `EndWorthWrapper` pays it.

What staying is worth is learned from how often the expert and the learner are
absorbed, per transition: ``f_E`` from the demonstrations (episodes that end
before the env's time limit, `expert_absorbed`), ``f_L`` from the learner's
own transitions. DAC's discriminator, at its optimum, gives the absorbing state
``D = f_E / (f_E + f_L)``, the chance that a visit to it is the expert's; the
reward puts ``D`` on the range of the learner's rewards (`stay_reward`), from
the least (an expert never absorbed: no state is less expert-like) to the
greatest. The terminal state itself is no stand-in for the absorbing state: a
fall ends the episode at the first state past the healthy range, which the
learned cost can rate like any of the learner's states (measured in
``benchmarks/terminal_reward.py``), so that falling would cost nothing.

Adding a constant to every reward adds it to ``r_stay`` too, hence
``constant / (1 - gamma)`` to every value, however the episode ends. Envs that
never end episodes early (imitation's ``seals/*`` tasks) train exactly as
without this.
"""

from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
from imitation.data import types
from imitation.rewards import reward_wrapper
from stable_baselines3.common import vec_env

# The key of the last info of an episode that SB3's VecEnvs set when a time limit ended it.
TRUNCATED = "TimeLimit.truncated"


def worth_after(reward: Any, gamma: float) -> Any:
    """What staying in the absorbing state is worth from the step after a termination on:
    ``sum_k>=1 gamma^k reward``."""
    return gamma / (1.0 - gamma) * reward


def expert_absorbed(demonstrations: Any, horizon: Optional[int]) -> float:
    """How often the expert is absorbed: its episodes that end before ``horizon`` steps
    (by termination; without a horizon, before the longest), per demonstrated transition.
    Demonstrations without episodes (states, transitions) say nothing of it: 0."""
    if not isinstance(demonstrations, Sequence) or not all(isinstance(t, types.Trajectory) for t in demonstrations):
        return 0.0
    lengths = np.array([len(t.acts) for t in demonstrations])
    if not len(lengths):
        return 0.0
    return float((lengths < (horizon or lengths.max())).sum() / lengths.sum())


def time_limit(venv: vec_env.VecEnv) -> Optional[int]:
    """The episode steps after which ``venv``'s time limit truncates, where its spec says."""
    try:
        spec = venv.get_attr("spec", indices=[0])[0]
    except AttributeError:
        return None
    return getattr(spec, "max_episode_steps", None)


def stay_reward(least: Any, greatest: Any, learner_absorbed: float, expert_absorbed: float) -> Any:
    """The reward of staying absorbed: DAC's ``D = f_E / (f_E + f_L)`` on the range
    ``[least, greatest]`` of the learner's rewards (see the module)."""
    total = learner_absorbed + expert_absorbed
    share = expert_absorbed / total if total > 0 else 0.5
    return least + share * (greatest - least)


def terminated(dones: np.ndarray, infos: Sequence[Dict[str, Any]]) -> np.ndarray:
    """Which of a VecEnv step's ``dones`` are terminations, not time limits."""
    return np.array([done and not info.get(TRUNCATED, False) for done, info in zip(dones, infos)], dtype=bool)


class EndWorthWrapper(reward_wrapper.RewardVecEnvWrapper):
    """imitation's reward-wrapping VecEnv that also pays, at each termination, the worth of
    staying absorbed forever after (`worth_after` with the learner's ``gamma``), as
    on-policy learners cannot bootstrap past it. Staying is worth `stay_reward` over the
    rewards paid and the terminations met since `new_round`.

    :param venv: the env
    :param reward_fn: the reward of a step, as imitation's wrapper takes it
    :param gamma: the learner's discount; None: pay nothing more (off-policy learners,
        whose relabelled minibatches add the worth)
    """

    def __init__(self, venv: vec_env.VecEnv, reward_fn: Callable[..., np.ndarray], gamma: Optional[float]):
        super().__init__(venv, reward_fn=reward_fn)
        self.gamma = gamma
        self.new_round(0.0)

    def new_round(self, expert_absorbed: float) -> None:
        """Forgets the rewards paid so far (the reward changes between rounds).

        :param expert_absorbed: how often the expert is absorbed (`expert_absorbed`),
            from the demonstrations the round's reward is fitted on
        """
        self.expert_absorbed = expert_absorbed
        self.least, self.greatest, self.steps, self.terminations = np.inf, -np.inf, 0, 0

    def step_wait(self):
        obs, rewards, dones, infos = super().step_wait()
        ended = terminated(dones, infos)
        self.least, self.greatest = min(self.least, float(rewards.min())), max(self.greatest, float(rewards.max()))
        self.steps, self.terminations = self.steps + len(rewards), self.terminations + int(ended.sum())
        if self.gamma is not None and ended.any():
            stay = stay_reward(self.least, self.greatest, self.terminations / self.steps, self.expert_absorbed)
            rewards = rewards.copy()
            rewards[ended] += worth_after(stay, self.gamma)
        return obs, rewards, dones, infos
