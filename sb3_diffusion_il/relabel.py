"""Relabelling an SB3 replay buffer's minibatches with the current reward.

Off-policy learners store rewards at collection time; here the reward changes
every round, so stored rewards go stale. While the context is active, every
minibatch the learner samples gets fresh rewards.
"""

import contextlib
from typing import Callable, Iterator

import gymnasium as gym
import torch as th
from imitation.rewards.reward_nets import RewardNet
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

RelabelFn = Callable[[ReplayBufferSamples], th.Tensor]


def env_actions(actions: th.Tensor, action_space: gym.Space) -> th.Tensor:
    """Replay-buffer actions in the env's units: SB3 stores Box actions rescaled to [-1, 1]."""
    if not isinstance(action_space, gym.spaces.Box):
        return actions
    low = th.as_tensor(action_space.low, device=actions.device, dtype=actions.dtype)
    high = th.as_tensor(action_space.high, device=actions.device, dtype=actions.dtype)
    return low + 0.5 * (actions + 1.0) * (high - low)


def reward_net_fn(reward_net: RewardNet, action_space: gym.Space) -> RelabelFn:
    """A relabel function giving any imitation ``RewardNet``'s reward (GAIL's, AIRL's, ours)."""

    def reward(samples: ReplayBufferSamples) -> th.Tensor:
        inputs = reward_net.preprocess(
            samples.observations,
            env_actions(samples.actions, action_space),
            samples.next_observations,
            samples.dones.reshape(-1),
        )
        with th.no_grad():
            return reward_net(*inputs)

    return reward


def check_relabelable(buffer: object) -> None:
    """Raises unless ``buffer`` is a plain (array-observation) SB3 ``ReplayBuffer``."""
    if not isinstance(buffer, ReplayBuffer) or isinstance(buffer, DictReplayBuffer):
        raise ValueError(
            f"The learner's replay buffer is a {type(buffer).__name__}, whose samples "
            "cannot be relabelled: use SB3's ReplayBuffer (the default of SAC, TD3, "
            "DDPG and TQC); Dict-observation and HER buffers are not supported.",
        )


@contextlib.contextmanager
def relabeled_sampling(buffer: ReplayBuffer, reward_fn: RelabelFn) -> Iterator[None]:
    """Within the context, ``buffer.sample`` returns minibatches with ``reward_fn``'s rewards.

    The buffer itself is left unchanged (its stored rewards, its class), so it
    saves and loads as usual.
    """
    check_relabelable(buffer)
    original = buffer.sample

    def sample(*args, **kwargs) -> ReplayBufferSamples:
        samples = original(*args, **kwargs)
        rewards = reward_fn(samples).reshape(samples.rewards.shape).to(samples.rewards)
        return samples._replace(rewards=rewards)

    buffer.sample = sample  # type: ignore[method-assign]
    try:
        yield
    finally:
        del buffer.sample
