"""Absorbing states: episodes that end early, without the bias of a zero-worth end."""

import numpy as np
import pytest
import torch as th
from imitation.data import types
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from drift_env import HORIZON, DriftEnv, expert_states
from sb3_diffusion_il import DiffusionScoreIL, DiffusionScoreReward, absorbing

FAST = dict(demo_batch_size=64, expert_fit_steps=50, learner_fit_steps=5, gen_train_timesteps=200, seed=0)


def drift_trainer(**kwargs) -> DiffusionScoreIL:
    venv = make_vec_env(DriftEnv, n_envs=1, seed=0)
    learner = SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
    # Score networks fitted well enough that the terminal states' cost means something.
    fitted = dict(expert_fit_steps=500, learner_fit_steps=50)
    return DiffusionScoreIL(demonstrations=expert_states(5), venv=venv, gen_algo=learner,
                            **{**FAST, **fitted, **kwargs})


def test_the_wrapped_env_pays_the_worth_of_staying_absorbed_at_terminations_only():
    venv = make_vec_env(DriftEnv, n_envs=2, seed=0)

    def reward(obs, acts, next_obs, dones):  # minus the distance to 0 of the next state
        return -np.abs(next_obs[:, 0])

    wrapped = absorbing.EndWorthWrapper(venv, reward, gamma=0.9)  # an expert never absorbed
    wrapped.reset()
    least, ends = np.inf, 0
    for _ in range(4 * HORIZON):
        _, rewards, dones, infos = wrapped.step(np.ones((2, 1), np.float32))  # straight out: terminates
        own = [-abs(info["terminal_observation"][0]) if done else paid
               for paid, done, info in zip(rewards, dones, infos)]
        least = min(least, *own)
        for paid, mine, done, info in zip(rewards, own, dones, infos):
            if done and not info["TimeLimit.truncated"]:  # its own reward, then 9 times the least paid
                assert paid == pytest.approx(mine + 9 * least)
                ends += 1
    assert ends > 0
    # Off-policy learners (gamma None) are paid the reward alone.
    plain = absorbing.EndWorthWrapper(make_vec_env(DriftEnv, n_envs=1, seed=0), reward, gamma=None)
    plain.reset()
    for _ in range(2 * HORIZON):
        _, rewards, dones, infos = plain.step(np.ones((1, 1), np.float32))
        if dones[0]:
            assert rewards[0] == pytest.approx(-abs(infos[0]["terminal_observation"][0]))


def test_staying_absorbed_is_worth_dacs_share_of_the_expert_on_the_rewards_range():
    assert absorbing.stay_reward(-1.0, 3.0, learner_absorbed=0.01, expert_absorbed=0.0) == -1.0
    assert absorbing.stay_reward(-1.0, 3.0, learner_absorbed=0.01, expert_absorbed=0.01) == 1.0
    assert absorbing.stay_reward(-1.0, 3.0, learner_absorbed=0.01, expert_absorbed=0.03) == pytest.approx(2.0)
    assert absorbing.stay_reward(-1.0, 3.0, learner_absorbed=0.0, expert_absorbed=0.01) == 3.0


def test_the_expert_is_absorbed_where_its_episodes_end_before_the_time_limit():
    def episode(length):
        return types.Trajectory(obs=np.zeros((length + 1, 1)), acts=np.zeros((length, 1)), infos=None, terminal=True)

    demos = [episode(1000), episode(1000), episode(920)]
    assert absorbing.expert_absorbed(demos, horizon=1000) == pytest.approx(1 / 2920)
    assert absorbing.expert_absorbed(demos[:2], horizon=1000) == 0.0
    assert absorbing.expert_absorbed(demos, horizon=None) == pytest.approx(1 / 2920)  # shorter than the longest
    assert absorbing.expert_absorbed(expert_states(2), horizon=1000) == 0.0  # states alone say nothing of it
    assert absorbing.time_limit(make_vec_env(DriftEnv, n_envs=1)) is None  # DriftEnv truncates by itself
    assert absorbing.time_limit(make_vec_env("Pendulum-v1", n_envs=1)) == 200


def test_on_policy_rounds_take_how_often_the_expert_set_last_is_absorbed():
    venv = make_vec_env(DriftEnv, n_envs=1, seed=0)
    learner = PPO("MlpPolicy", venv, n_steps=64, batch_size=32, seed=0)
    trainer = DiffusionScoreIL(demonstrations=expert_states(5), venv=venv, gen_algo=learner, **FAST)
    trainer.train_gen(64)
    assert trainer.venv_wrapped.expert_absorbed == 0.0  # states alone: never absorbed

    def episode(length):
        return types.Trajectory(obs=np.full((length + 1, 1), 0.5, np.float32), acts=np.zeros((length, 1)),
                                infos=None, terminal=True)

    ending_early = [episode(HORIZON), episode(HORIZON // 2)]
    trainer.set_demonstrations(ending_early)
    trainer.train_gen(64)
    assert trainer.venv_wrapped.expert_absorbed == absorbing.expert_absorbed(ending_early, None) > 0


def test_an_env_that_ends_episodes_early_needs_no_flag():
    trainer = drift_trainer()  # no allow_variable_horizon
    trainer.train(400, progress_bar=False)


def test_relabelled_minibatches_add_the_worth_of_staying_at_terminations():
    trainer = drift_trainer()
    trainer.train(400, progress_bar=False)
    samples = trainer.gen_algo.replay_buffer.sample(2048)
    ended = samples.dones.reshape(-1) == 1
    assert ended.any() and not ended.all()
    stored = trainer.reward_train.predict_processed(
        samples.observations.numpy(), samples.actions.numpy(), samples.next_observations.numpy(),
        samples.dones.numpy().reshape(-1), training=False)
    samples = samples._replace(rewards=th.as_tensor(stored).reshape(-1, 1))
    relabelled = trainer._minibatch_reward(samples)
    plain = trainer.reward_train.minibatch(samples.rewards)
    gap = (relabelled - plain).reshape(-1)
    assert th.all(gap[~ended] == 0)
    # The expert (states alone) is never absorbed: staying is worth the minibatch's least reward.
    least = plain.min()
    th.testing.assert_close(gap[ended], absorbing.worth_after(least, trainer.gen_algo.gamma).expand(int(ended.sum())))


def test_without_absorbing_states_imitations_check_applies():
    trainer = drift_trainer(absorbing_states=False)
    with pytest.raises(ValueError, match="allow_variable_horizon"):
        trainer.train(200, progress_bar=False)
    drift_trainer(absorbing_states=False, allow_variable_horizon=True).train(200, progress_bar=False)


def test_an_env_that_never_ends_episodes_early_trains_as_without_absorbing_states(venv, pendulum_states):
    runs = []
    for absorbing_states in (True, False):
        sac = SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
        DiffusionScoreIL(demonstrations=pendulum_states, venv=venv, gen_algo=sac, absorbing_states=absorbing_states,
                         **FAST).train(400, progress_bar=False)
        runs.append(th.nn.utils.parameters_to_vector(sac.policy.parameters()))
    assert th.equal(*runs)


# A constant added to every cost; the learned reward is the plain -c.
CONSTANT = 5.0
BIAS_STEPS = 20_000


def episode_length(constant: float, absorbing_states: bool, monkeypatch) -> float:
    """Mean evaluation episode length of PPO imitating the drift expert with ``constant`` on every cost."""
    cost = DiffusionScoreReward.cost
    venv = make_vec_env(DriftEnv, n_envs=4, seed=0)
    learner = PPO("MlpPolicy", venv, n_steps=256, batch_size=64, gamma=0.9, seed=0)
    trainer = DiffusionScoreIL(
        demonstrations=expert_states(10), venv=venv, gen_algo=learner, seed=0, reward_saturation=None,
        reward_std=None, expert_fit_steps=2000, absorbing_states=absorbing_states,
        allow_variable_horizon=not absorbing_states,
    )
    with monkeypatch.context() as patch:
        patch.setattr(DiffusionScoreReward, "cost", lambda self, x: cost(self, x) + constant)
        trainer.train(BIAS_STEPS, progress_bar=False)
    _, lengths = evaluate_policy(learner, make_vec_env(DriftEnv, n_envs=1, seed=10_000), n_eval_episodes=20,
                                 return_episode_rewards=True)
    return float(np.mean(lengths))


@pytest.mark.slow
def test_a_constant_on_every_cost_changes_nothing_with_absorbing_states(monkeypatch):
    lengths = {c: episode_length(c, True, monkeypatch) for c in (CONSTANT, -CONSTANT)}
    print(f"absorbing states, mean episode length by the constant on every cost: {lengths}")
    assert min(lengths.values()) >= 0.9 * HORIZON, lengths


@pytest.mark.slow
def test_without_absorbing_states_a_constant_decides_the_episode_length(monkeypatch):
    """The bias the test above shows gone: costs above zero teach the learner to end episodes."""
    lengths = {c: episode_length(c, False, monkeypatch) for c in (CONSTANT, -CONSTANT)}
    print(f"the end worth nothing, mean episode length by the constant on every cost: {lengths}")
    assert lengths[CONSTANT] < 0.5 * HORIZON and lengths[-CONSTANT] >= 0.9 * HORIZON, lengths
