"""Replay relabelling: fresh rewards in every minibatch, each transition scored once per reward version."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util.networks import RunningNorm
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_diffusion_il import relabel

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT_SPACE = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def filled_buffer(size=40, n_envs=1, n_added=20, **kwargs):
    """A replay buffer (``size`` transitions over all envs) whose transition i of env e
    has observation (i, e, 0), next observation (i + 0.5, e, 0)."""
    buffer = ReplayBuffer(size, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=n_envs, **kwargs)
    for i in range(n_added):
        add(buffer, i)
    return buffer


def add(buffer, i):
    envs = np.arange(buffer.n_envs, dtype=np.float32)
    obs = np.stack([np.full(buffer.n_envs, i, np.float32), envs, np.zeros_like(envs)], axis=1)
    next_obs = obs + np.array([0.5, 0, 0], np.float32)
    buffer.add(obs, next_obs, np.zeros((buffer.n_envs, 1)), np.full(buffer.n_envs, -99.0),
               np.zeros(buffer.n_envs), [{}] * buffer.n_envs)


class CountingReward:
    """Reward = 100000 * version + obs_0 + 10 * obs_1 + 100 * next_obs_0, counting transitions scored."""

    def __init__(self):
        self.version = 0
        self.scored = 0

    def __call__(self, samples):
        self.scored += len(samples.observations)
        return expected(samples, self.version).reshape(-1)


def expected(samples, version):
    """The reward ``CountingReward`` gives ``samples`` at ``version``, shaped like a minibatch's rewards."""
    obs, next_obs = samples.observations, samples.next_observations
    return (100_000 * version + obs[:, 0] + 10 * obs[:, 1] + 100 * next_obs[:, 0]).reshape(-1, 1)


@pytest.mark.parametrize("n_envs", [1, 2])
def test_minibatches_carry_fresh_rewards_scored_once(n_envs):
    buffer, reward = filled_buffer(n_envs=n_envs), CountingReward()
    with relabel.relabeled_sampling(buffer, reward, version=lambda: reward.version):
        for _ in range(20):
            samples = buffer.sample(16)
            th.testing.assert_close(samples.rewards, expected(samples, 0))
        assert reward.scored <= 20 * n_envs  # each stored transition at most once
        reward.version = 1  # the reward changed: everything is scored again
        samples = buffer.sample(16)
        th.testing.assert_close(samples.rewards, expected(samples, 1))
        buffer._get_samples(np.arange(20))
    # The relabelled rewards stay in the buffer; the buffer is SB3's own again.
    stored = relabel.stored_transitions(buffer, np.arange(20))
    th.testing.assert_close(stored.rewards.reshape(-1, 1), expected(stored, 1))
    assert not {"add", "_get_samples"} & set(vars(buffer))


def test_overwritten_slot_is_scored_again():
    buffer, reward = filled_buffer(size=10, n_added=10), CountingReward()
    with relabel.relabeled_sampling(buffer, reward):
        buffer.sample(64)
        add(buffer, 123)  # overwrites slot 0 of the full circular buffer
        samples = buffer._get_samples(np.array([0]))
    assert float(samples.observations[0, 0]) == 123
    th.testing.assert_close(samples.rewards, expected(samples, 0))


def test_memory_optimised_buffer_scores_the_right_next_observation():
    buffer, reward = filled_buffer(optimize_memory_usage=True, handle_timeout_termination=False), CountingReward()
    with relabel.relabeled_sampling(buffer, reward):
        samples = buffer.sample(16)
    th.testing.assert_close(samples.rewards, expected(samples, 0))


def test_transform_applies_to_each_minibatch():
    buffer = filled_buffer()
    with relabel.relabeled_sampling(buffer, CountingReward(), transform=lambda s: s.rewards - s.rewards.mean()):
        samples = buffer.sample(16)
    assert abs(float(samples.rewards.mean())) < 1e-3


def test_reward_net_relabels_in_eval_mode():
    """Replay data must not move the statistics of a reward net's input normaliser."""
    net = BasicRewardNet(OBS_SPACE, ACT_SPACE, use_action=False, normalize_input_layer=RunningNorm)
    buffer = filled_buffer()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with relabel.relabeled_sampling(buffer, relabel.reward_net_fn(net, ACT_SPACE)):
        buffer.sample(16)
    for key, value in net.state_dict().items():
        th.testing.assert_close(value, before[key])
    assert net.training  # the mode is restored


def test_transitions_are_scored_up_front_when_each_will_be_drawn_twice():
    buffer, reward = filled_buffer(), CountingReward()
    with relabel.relabeled_sampling(buffer, reward, expected_draws=39):
        assert reward.scored == 0  # fewer than two draws per transition: scored when drawn
    with relabel.relabeled_sampling(buffer, reward, expected_draws=40):
        assert reward.scored == 20
        stored = relabel.stored_transitions(buffer, np.arange(20))
        th.testing.assert_close(stored.rewards.reshape(-1, 1), expected(stored, 0))
        buffer.sample(16)
        assert reward.scored == 20


def test_kept_versions_bound_the_scoring_per_context_and_the_age_of_rewards():
    buffer, reward = filled_buffer(), CountingReward()
    scored_at = relabel.new_scored_at(buffer)

    def context():
        return relabel.relabeled_sampling(
            buffer, reward, version=lambda: reward.version, scored_at=scored_at, refresh=5,
        )

    for version in range(6):
        reward.version, reward.scored = version, 0
        with context():
            # On entry: every never-scored transition, then the five stalest others.
            assert reward.scored == (20 if version == 0 else 5)
            samples = buffer._get_samples(np.arange(20))
        assert reward.scored == (20 if version == 0 else 5)  # drawing scored nothing more
        ages = version - (samples.rewards.reshape(-1) // 100_000)
        assert int(ages.max()) == min(version, 3)  # at most ceil(20 / 5) - 1 versions old
        th.testing.assert_close(samples.rewards % 100_000, expected(samples, 0))
    reward.scored = 0
    with context():
        add(buffer, 20)  # stored within the context with reward -99: scored when drawn
        samples = buffer._get_samples(np.array([20]))
    assert reward.scored == 6
    th.testing.assert_close(samples.rewards, expected(samples, 5))


def test_kept_versions_need_a_refresh_and_the_buffer_s_size():
    buffer, reward = filled_buffer(), CountingReward()
    with pytest.raises(ValueError, match="refresh=None"):
        with relabel.relabeled_sampling(buffer, reward, scored_at=relabel.new_scored_at(buffer)):
            pass
    with pytest.raises(ValueError, match="40 slots"):
        with relabel.relabeled_sampling(buffer, reward, scored_at=np.zeros(7, np.int64), refresh=5):
            pass


def test_rewards_stored_within_the_context_can_count_as_current():
    buffer, reward = filled_buffer(), CountingReward()
    with relabel.relabeled_sampling(buffer, reward, stores_current_rewards=True):
        add(buffer, 20)  # stored with reward -99, which the learner's env reported
        samples = buffer._get_samples(np.array([20]))
    assert float(samples.rewards) == -99.0
    with relabel.relabeled_sampling(buffer, reward):
        add(buffer, 21)
        samples = buffer._get_samples(np.array([21]))
    th.testing.assert_close(samples.rewards, expected(samples, 0))
