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


def trajectory(length: int, infos=None) -> types.Trajectory:
    return types.Trajectory(obs=np.zeros((length + 1, 1)), acts=np.zeros((length, 1)), infos=infos, terminal=True)


def drift_trainer(**kwargs) -> DiffusionScoreIL:
    venv = make_vec_env(DriftEnv, n_envs=1, seed=0)
    learner = SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
    # Score networks fitted well enough that the absorbing state's cost means something.
    fitted = dict(expert_fit_steps=500, learner_fit_steps=50)
    return DiffusionScoreIL(demonstrations=expert_states(5), venv=venv, gen_algo=learner,
                            **{**FAST, **fitted, **kwargs})


def test_which_episodes_ended_by_termination():
    assert absorbing.ended_by_termination(trajectory(5, [{}] * 4 + [{"TimeLimit.truncated": False}]), 50)
    assert not absorbing.ended_by_termination(trajectory(5, [{}] * 4 + [{"TimeLimit.truncated": True}]), 50)
    # Without infos: shorter than the time limit, or any end where there is none.
    assert absorbing.ended_by_termination(trajectory(5), 50)
    assert not absorbing.ended_by_termination(trajectory(50), 50)
    assert absorbing.ended_by_termination(trajectory(50), None)
    fragment = types.Trajectory(obs=np.zeros((3, 1)), acts=np.zeros((2, 1)), infos=None, terminal=False)
    assert not absorbing.ended_by_termination(fragment, 50)
    assert absorbing.terminations([trajectory(5), trajectory(50), trajectory(7)], 50) == 2
    assert absorbing.terminations(np.zeros((10, 1)), 50) == 0  # states hold no episode ends


def test_the_wrapped_env_pays_the_absorbing_worth_at_terminations_only():
    venv = make_vec_env(DriftEnv, n_envs=2, seed=0)
    wrapped = absorbing.EndWorthWrapper(venv, lambda obs, acts, next_obs, dones: np.zeros(len(obs)), lambda: -7.0)
    wrapped.reset()
    paid = {True: set(), False: set()}
    for _ in range(4 * HORIZON):
        _, rewards, dones, infos = wrapped.step(np.ones((2, 1), np.float32))  # straight out: terminates
        for reward, done, info in zip(rewards, dones, infos):
            if done:
                paid[bool(info["TimeLimit.truncated"])].add(float(reward))
            else:
                assert reward == 0.0
    assert paid[False] == {-7.0}


def test_an_env_that_never_terminates_never_gains_the_indicator(venv, sac, pendulum_states):
    trainer = DiffusionScoreIL(demonstrations=pendulum_states, venv=venv, gen_algo=sac, **FAST)
    trainer.train(200, progress_bar=False)
    assert not trainer.featurizer.absorbing
    assert trainer.expert_score_net.dim == trainer.learner_score_net.dim == 3
    assert trainer.reward_train.absorbing_reward is None


def test_the_first_termination_adds_the_indicator_and_its_learned_cost():
    trainer = drift_trainer()  # no allow_variable_horizon: episodes of any length are fine
    trainer.train(200, progress_bar=False)
    assert trainer.featurizer.absorbing
    assert trainer.expert_score_net.dim == trainer.learner_score_net.dim == 2
    assert trainer.expert_score_net.is_fitted
    features = trainer.learner_buffer.newest(len(trainer.learner_buffer))
    trajectories_ended = int((features[:, 1] == 1).sum())
    assert trajectories_ended >= 200 // HORIZON  # a random policy leaves the line within ~25 steps
    np.testing.assert_array_equal(features[features[:, 1] == 1, 0], trainer.featurizer.centre[0])
    trainer.train(200, progress_bar=False)
    expert = trainer.reward_train.predict_processed(*(np.zeros((1, 1)),) * 3, np.zeros(1))
    # The expert never reaches the absorbing state: it is costlier than the expert's own states.
    assert trainer.reward_train.absorbing_reward < float(expert[0])


def test_relabelled_minibatches_add_the_absorbing_worth_at_terminations():
    trainer = drift_trainer()
    trainer.train(400, progress_bar=False)
    samples = trainer.gen_algo.replay_buffer.sample(2048)
    ended = samples.dones.reshape(-1) == 1
    assert ended.any() and not ended.all()
    stored = trainer.reward_train.predict_processed(
        samples.observations.numpy(), samples.actions.numpy(), samples.next_observations.numpy(),
        samples.dones.numpy().reshape(-1), training=False)
    relabelled = trainer._minibatch_reward(samples._replace(rewards=th.as_tensor(stored).reshape(-1, 1)))
    plain = trainer.reward_train.minibatch(th.as_tensor(stored).reshape(-1, 1))
    gap = (relabelled - plain).reshape(-1)
    assert th.all(gap[~ended] == 0)
    assert th.all(gap[ended] < 0)  # the absorbing state is worth less than the minibatch's mean


def test_without_absorbing_states_imitations_check_applies():
    trainer = drift_trainer(absorbing_states=False)
    with pytest.raises(ValueError, match="allow_variable_horizon"):
        trainer.train(200, progress_bar=False)
    trainer = drift_trainer(absorbing_states=False, allow_variable_horizon=True)
    trainer.train(200, progress_bar=False)
    assert not trainer.featurizer.absorbing


def test_demonstrations_that_end_early_start_with_the_indicator():
    venv = make_vec_env(DriftEnv, n_envs=1, seed=0)
    truncated = [{}] * (HORIZON - 1) + [{"TimeLimit.truncated": True}]
    demos = [trajectory(10), trajectory(HORIZON, truncated), trajectory(20)]
    trainer = DiffusionScoreIL(demonstrations=demos, venv=venv, gen_algo=SAC("MlpPolicy", venv), **FAST)
    assert trainer.featurizer.absorbing
    expert = th.cat([trainer.expert_data, trainer.expert_heldout])
    assert expert.shape == (10 + HORIZON + 20 + 2, 2) and int((expert[:, 1] == 1).sum()) == 2


def test_save_and_load_after_the_indicator(tmp_path):
    trainer = drift_trainer()
    trainer.train(200, progress_bar=False)
    trainer.save(tmp_path / "run.pt")
    loaded = DiffusionScoreIL.load(tmp_path / "run.pt", demonstrations=expert_states(5),
                                   venv=make_vec_env(DriftEnv, n_envs=1, seed=0))
    assert loaded.featurizer.absorbing
    for name in ("expert_score_net", "learner_score_net"):
        for key, value in getattr(trainer, name).state_dict().items():
            th.testing.assert_close(getattr(loaded, name).state_dict()[key], value)
    np.testing.assert_array_equal(loaded.learner_buffer.rows, trainer.learner_buffer.rows)
    np.testing.assert_array_equal(loaded.featurizer.centre, trainer.featurizer.centre)
    loaded.train(200, progress_bar=False)


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
    mean, _ = evaluate_policy(learner, make_vec_env(DriftEnv, n_envs=1, seed=10_000), n_eval_episodes=20)
    return float(mean)


@pytest.mark.slow
def test_a_constant_on_every_cost_changes_nothing_with_absorbing_states(monkeypatch):
    lengths = {c: episode_length(c, True, monkeypatch) for c in (CONSTANT, -CONSTANT)}
    assert min(lengths.values()) >= 0.9 * HORIZON, lengths


@pytest.mark.slow
def test_without_absorbing_states_a_constant_decides_the_episode_length(monkeypatch):
    """The bias the test above shows gone: costs above zero teach the learner to end episodes."""
    lengths = {c: episode_length(c, False, monkeypatch) for c in (CONSTANT, -CONSTANT)}
    assert lengths[CONSTANT] < 0.5 * HORIZON and lengths[-CONSTANT] >= 0.9 * HORIZON, lengths
