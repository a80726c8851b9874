"""DiffusionScoreIL: construction errors, reward delivery, learners, drop-in for GAIL."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import seals  # noqa: F401  (registers the seals/* tasks)
import torch as th
from imitation.algorithms.adversarial.gail import GAIL
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util.networks import RunningNorm
from sb3_contrib import TQC
from stable_baselines3 import DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_diffusion_il import DiffusionScoreIL, ScoreNetwork, load_demonstrations, relabel

FAST = dict(demo_batch_size=64, expert_fit_steps=50, learner_fit_steps=5, gen_train_timesteps=200, seed=0)


def make_trainer(venv, gen_algo, demonstrations, **kwargs):
    return DiffusionScoreIL(demonstrations=demonstrations, venv=venv, gen_algo=gen_algo, **{**FAST, **kwargs})


class DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (3,))})
    action_space = gym.spaces.Box(-1, 1, (1,))

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class ImageObsEnv(DictObsEnv):
    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), dtype=np.uint8)


class TupleObsEnv(DictObsEnv):
    observation_space = gym.spaces.Tuple((gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)))


# -- bad input: clear errors at construction ------------------------------------------


def test_no_demonstrations(venv, sac):
    with pytest.raises(ValueError, match="No demonstrations"):
        make_trainer(venv, sac, None)
    with pytest.raises(ValueError, match="0 states"):
        make_trainer(venv, sac, np.zeros((0, 3), np.float32))


def test_demonstrations_from_another_task(venv, sac):
    with pytest.raises(ValueError, match=r"shape \(4,\).*same task"):
        make_trainer(venv, sac, np.zeros((10, 4), np.float32))


@pytest.mark.parametrize("env_cls, match", [
    (ImageObsEnv, "holds images.*Supported: Box"), (TupleObsEnv, "Tuple, which is not supported.*FlattenObservation"),
])
def test_unsupported_observations(env_cls, match):
    venv = DummyVecEnv([env_cls])
    algo = PPO("CnnPolicy", venv, n_steps=8, batch_size=8) if env_cls is ImageObsEnv else None
    with pytest.raises(ValueError, match=match):
        make_trainer(venv, algo, np.zeros((10, 3), np.float32))


def test_state_action_without_actions(venv, sac, pendulum_states):
    with pytest.raises(ValueError, match="needs demonstrations with actions"):
        make_trainer(venv, sac, pendulum_states, conditioning="state_action")


def test_non_finite_demonstrations(venv, sac, pendulum_states):
    bad = pendulum_states.copy()
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="1 non-finite"):
        make_trainer(venv, sac, bad)


def test_learner_built_on_another_env(venv, pendulum_states):
    other = SAC("MlpPolicy", make_vec_env("MountainCarContinuous-v0"))
    with pytest.raises(ValueError, match="observation_space.*same environment"):
        make_trainer(venv, other, pendulum_states)


def test_unknown_conditioning(venv, sac, pendulum_states):
    with pytest.raises(ValueError, match="state_next_state"):
        make_trainer(venv, sac, pendulum_states, conditioning="action")


def test_unknown_cost_precision(venv, sac, pendulum_states):
    with pytest.raises(ValueError, match="bfloat16"):
        make_trainer(venv, sac, pendulum_states, cost_precision="half")


@pytest.mark.parametrize("refresh", [0, 2.5, "all"])
def test_bad_relabel_refresh(venv, sac, pendulum_states, refresh):
    with pytest.raises((TypeError, ValueError), match="relabel_refresh.*(at least 1|integer)"):
        make_trainer(venv, sac, pendulum_states, relabel_refresh=refresh)


@pytest.mark.parametrize("name, match", [
    ("demo_minibatch_size", "demo_minibatch_size, an argument of imitation's GAIL, has no equivalent.*leave it out"),
    ("init_tensorboard_graph", "init_tensorboard_graph, an argument of imitation's GAIL, has no equivalent"),
    ("n_disc_updates_per_round", "is learner_fit_steps here"),
])
def test_gail_arguments_name_their_equivalent(venv, sac, pendulum_states, name, match):
    with pytest.raises(TypeError, match=match):
        make_trainer(venv, sac, pendulum_states, **{name: 1})


def test_unknown_setting_names_the_settings(venv, sac, pendulum_states):
    with pytest.raises(TypeError, match=r"\['reward_normalization'\] are not DiffusionScoreIL arguments.*reward_std"):
        make_trainer(venv, sac, pendulum_states, reward_normalization="robust")


def test_learner_it_cannot_serve(venv, pendulum_states):
    class NeitherKind(BaseAlgorithm):  # no replay buffer, no rollouts
        def _setup_model(self):
            pass

        def learn(self, *args, **kwargs):
            return self

    algo = NeitherKind.__new__(NeitherKind)
    with pytest.raises(TypeError, match="off-policy learner with a replay buffer.*on-policy"):
        make_trainer(venv, algo, pendulum_states)


@pytest.mark.parametrize("setting", [{"reward_std": 0.0}, {"reward_std": "big"}, {"reward_saturation": 1.0}])
def test_bad_reward_scale(venv, sac, pendulum_states, setting):
    with pytest.raises(ValueError, match=next(iter(setting))):
        make_trainer(venv, sac, pendulum_states, **setting)


@pytest.mark.parametrize("drop, match", [
    ([3], r"\[3\] are not coordinates of the 3-dimensional .* from 0 to 2"),
    ([-1], r"\[-1\] are not coordinates"),
    ([0, 1, 2], "leaves out every coordinate"),
])
def test_bad_dropped_coordinates(venv, sac, pendulum_states, drop, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(venv, sac, pendulum_states, drop_state_coordinates=drop)


def test_a_named_set_of_dropped_coordinates(venv, sac, pendulum_states):
    # Pendulum is not MuJoCo: it has no unbounded position, so nothing is left out.
    assert make_trainer(venv, sac, pendulum_states,
                        drop_state_coordinates="unbounded_positions").featurizer.dropped == ()
    with pytest.raises(ValueError, match="'positions': give the coordinates' indices or 'unbounded_positions'"):
        make_trainer(venv, sac, pendulum_states, drop_state_coordinates="positions")
    hopper = make_vec_env("seals/Hopper-v1", n_envs=1)
    trainer = make_trainer(hopper, SAC("MlpPolicy", hopper), load_demonstrations("seals/Hopper-v1"),
                           drop_state_coordinates="unbounded_positions")
    assert trainer.featurizer.dropped == (0,) and trainer.reward_train.base.state_coordinates == list(range(1, 12))


@pytest.mark.parametrize("setting, error, match", [
    ({"learner_fit_steps": -1}, ValueError, "at least 0"), ({"expert_fit_steps": 2.5}, TypeError, "integer"),
    ({"demo_batch_size": 1.5}, TypeError, "demo_batch_size=1.5 must be an integer"),
    ({"gen_train_timesteps": 0}, ValueError, "gen_train_timesteps=0 must be at least 1"),
    ({"score_opt_cls": "adam"}, TypeError, "torch.optim.Optimizer class"),
])
def test_bad_score_settings(venv, sac, pendulum_states, setting, error, match):
    with pytest.raises(error, match=match):
        make_trainer(venv, sac, pendulum_states, **setting)


@pytest.mark.parametrize("bad_venv", [gym.make("Pendulum-v1"), "Pendulum-v1"])
def test_venv_that_is_not_a_vec_env(sac, pendulum_states, bad_venv):
    with pytest.raises(TypeError, match="not a Stable-Baselines3 VecEnv: build one, e.g. `make_vec_env"):
        make_trainer(bad_venv, sac, pendulum_states)


def test_state_conditioning_ignores_actions_of_another_space(pendulum_trajectories):
    cartpole = make_vec_env("CartPole-v1", n_envs=1)  # Discrete actions; Pendulum's are Box
    states = [dataclasses.replace(t, obs=np.zeros((len(t.obs), 4), np.float32)) for t in pendulum_trajectories]
    trainer = make_trainer(cartpole, PPO("MlpPolicy", cartpole, n_steps=64, batch_size=64), states,
                           gen_train_timesteps=None)
    assert trainer.expert_score_net.dim == 4


def test_nan_true_reward_in_debug_mode_stops_with_floating_point_error(pendulum_states):
    class NaNReward(gym.Wrapper):
        def step(self, action):
            obs, _, terminated, truncated, info = self.env.step(action)
            return obs, float("nan"), terminated, truncated, info

    venv = make_vec_env("Pendulum-v1", n_envs=1, wrapper_class=NaNReward)
    sac = SAC("MlpPolicy", venv, learning_starts=100, batch_size=64)
    with pytest.raises(FloatingPointError, match="Non-finite true reward at env step 1.*environment's rewards"):
        make_trainer(venv, sac, pendulum_states, debug_use_ground_truth=True).train(200, progress_bar=False)


@pytest.mark.parametrize("path, error, match", [
    ("/proc/trainer.pt", OSError, "Cannot write /proc/trainer.pt.*choose a path you can write to"),
    ("{file}/trainer.pt", NotADirectoryError, "is a file, not a folder. Choose another path"),
    ("{dir}", IsADirectoryError, "it is a directory. Name a file"),
])
def test_save_to_an_unusable_path_names_it(tmp_path, venv, sac, pendulum_states, path, error, match):
    (tmp_path / "file").write_text("a user's data")
    path = path.format(file=tmp_path / "file", dir=tmp_path)
    with pytest.raises(error, match=match):
        make_trainer(venv, sac, pendulum_states).save(path)
    assert (tmp_path / "file").read_text() == "a user's data"


def test_load_refuses_settings_the_saved_networks_were_fitted_without(tmp_path, venv, sac, pendulum_states):
    make_trainer(venv, sac, pendulum_states).save(tmp_path / "scores.pt")
    with pytest.raises(ValueError, match="conditioning='state_action' differs.*Load without conditioning"):
        DiffusionScoreIL.load(tmp_path / "scores.pt", demonstrations=pendulum_states, venv=venv,
                              conditioning="state_action")


def test_too_few_timesteps(venv, sac, pendulum_states):
    with pytest.raises(ValueError, match="less than one round"):
        make_trainer(venv, sac, pendulum_states).train(100)


# -- reward delivery --------------------------------------------------------------------


def spy_minibatch_rewards(algo):
    """The rewards of a minibatch drawn at every ``train`` call of an off-policy learner."""
    seen = []
    original_train = algo.train

    def spy_train(gradient_steps, batch_size):
        seen.append(algo.replay_buffer.sample(batch_size).rewards.clone())
        original_train(gradient_steps, batch_size)

    algo.train = spy_train
    return seen


def test_off_policy_learner_trains_on_relabelled_rewards(venv, sac, pendulum_states):
    trainer = make_trainer(venv, sac, pendulum_states, reward_std=0.1)
    seen = spy_minibatch_rewards(sac)
    trainer.train(400, progress_bar=False)
    last = seen[-1]
    assert float(last.std(unbiased=False)) == pytest.approx(0.1, rel=1e-3)
    assert not np.allclose(last.numpy().ravel(), 0.0)
    # Round 0 collects with identical score networks (cost 0); round 1's relabelling
    # wrote the refitted cost back into the buffer.
    stored = sac.replay_buffer.rewards[:200]
    assert np.count_nonzero(stored) > 100
    # Outside training, the buffer is SB3's own again.
    assert not {"add", "_get_samples"} & set(vars(sac.replay_buffer))


@pytest.mark.parametrize("algo_cls, kwargs, expected", [
    (SAC, {}, 1.0), (SAC, {"ent_coef": "auto_0.1"}, 0.1), (SAC, {"ent_coef": 0.05}, 0.05),
    (TQC, {"ent_coef": "auto_0.2"}, 0.2), (TD3, {}, 1.0), (PPO, {}, 1.0),
])
def test_auto_reward_std_follows_the_learners_temperature(venv, pendulum_states, algo_cls, kwargs, expected):
    trainer = make_trainer(venv, algo_cls("MlpPolicy", venv, seed=0, **kwargs), pendulum_states)
    assert trainer.reward_std == pytest.approx(expected)


def test_wrapped_env_reward_is_saturated_each_round(pendulum_states):
    venv = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    ppo = PPO("MlpPolicy", venv, n_steps=200, batch_size=50, n_epochs=1, seed=0)
    trainer = make_trainer(venv, ppo, pendulum_states, gen_train_timesteps=None)
    trainer.train(800, progress_bar=False)
    # The last round's rewards, as PPO stored them, are saturated at the scale set
    # from the previous round's states: within +-reward_std=1, not of the raw cost.
    # (SB3 adds the bootstrapped value to the rewards of time-limit truncations.)
    rewards = ppo.rollout_buffer.rewards
    assert np.quantile(np.abs(rewards), 0.99) <= 1 and rewards.std() > 0.05
    assert trainer.reward_train.scale > 0


def test_wrapped_env_reports_cost_reward_and_keeps_true_reward(venv, sac, pendulum_states):
    trainer = make_trainer(venv, sac, pendulum_states)
    trainer.train(400, progress_bar=False)  # learner score now differs from the expert's
    truth = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    wrapped = trainer.venv_wrapped
    wrapped.seed(123)
    truth.seed(123)
    obs = wrapped.reset()
    truth_obs = truth.reset()
    np.testing.assert_allclose(obs, truth_obs)
    action = np.array([[0.5]], np.float32)
    state = trainer.generator.get_state()
    next_obs, reward, _, infos = wrapped.step(action)
    _, true_reward, _, _ = truth.step(action)
    trainer.generator.set_state(state)
    # reward_train is the reward venv_wrapped pays: the same noise gives the same value.
    paid = trainer.reward_train.predict_processed(obs, action, next_obs, np.zeros(1, bool), training=True)
    np.testing.assert_array_equal(reward, paid)
    trainer.generator.set_state(state)
    raw = trainer.reward_train.base.predict_processed(obs, action, next_obs, np.zeros(1, bool))
    expected = np.tanh(raw / trainer.reward_train.scale) * trainer.reward_std
    np.testing.assert_allclose(reward, expected, rtol=1e-4)
    assert infos[0]["original_env_rew"] == pytest.approx(true_reward[0])
    assert not np.isclose(reward[0], true_reward[0])


def test_ground_truth_debug_mode_passes_true_reward(venv, sac, pendulum_states):
    trainer = make_trainer(venv, sac, pendulum_states, debug_use_ground_truth=True)
    trainer.train(200, progress_bar=False)
    stored = sac.replay_buffer.rewards[: sac.replay_buffer.pos]
    assert stored.min() < -0.5  # Pendulum's true reward, not the cost


def test_state_action_relabel_sees_env_unit_actions(venv, pendulum_trajectories):
    sac = SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
    trainer = make_trainer(venv, sac, pendulum_trajectories, conditioning="state_action")
    trainer.train(200, progress_bar=False)
    samples = sac.replay_buffer.sample(64)
    seen = {}
    trainer.reward_train.base.forward = lambda s, a, ns, d: th.zeros(len(seen.setdefault("acts", a)))
    relabel.reward_net_fn(trainer.reward_train, venv.action_space)(samples)
    expected = sac.policy.unscale_action(samples.actions.numpy())
    np.testing.assert_allclose(seen["acts"].numpy(), expected, rtol=1e-5)
    assert np.abs(expected).max() > 1.0  # Pendulum acts in [-2, 2]


# -- learners and the drop-in -----------------------------------------------------------


@pytest.mark.parametrize("algo_cls", [TD3, DDPG, TQC])
def test_one_round_with_other_off_policy_learners(venv, pendulum_states, algo_cls):
    algo = algo_cls("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
    trainer = make_trainer(venv, algo, pendulum_states)
    trainer.train(200, progress_bar=False)
    assert algo.num_timesteps == 200
    assert len(trainer.learner_buffer) == 200


def test_one_round_with_dqn_on_discrete_actions():

    venv = make_vec_env("seals/CartPole-v0", n_envs=1, seed=0)
    dqn = DQN("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
    states = np.concatenate([t.obs for t in load_demonstrations("seals/CartPole-v0", n_episodes=2)])
    trainer = make_trainer(venv, dqn, states, gen_train_timesteps=500)
    seen = spy_minibatch_rewards(dqn)
    trainer.train(1000, progress_bar=False)
    assert dqn.num_timesteps == 1000
    # The second round's minibatches carry the refitted cost, standardised.
    assert float(seen[-1].std(unbiased=False)) == pytest.approx(trainer.reward_std, rel=1e-3)


def test_float64_observations_of_mujoco_tasks():
    venv = make_vec_env("InvertedPendulum-v4", n_envs=1, seed=0)
    assert venv.observation_space.dtype == np.float64
    states = np.random.default_rng(0).normal(scale=0.1, size=(500, 4))
    sac = SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
    trainer = make_trainer(venv, sac, states, allow_variable_horizon=True)  # it terminates early
    trainer.train(400, progress_bar=False)
    assert trainer.gen_algo.num_timesteps == 400


def test_one_round_with_ppo_uses_the_wrapped_reward(pendulum_states):
    venv = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    ppo = PPO("MlpPolicy", venv, n_steps=100, batch_size=50, n_epochs=1, seed=0)
    trainer = DiffusionScoreIL(demonstrations=pendulum_states, venv=venv, gen_algo=ppo,
                               demo_batch_size=64, expert_fit_steps=50, seed=0)
    assert trainer.gen_train_timesteps == 200
    trainer.train(200, progress_bar=False)
    assert ppo.num_timesteps == 200
    assert ppo.env is trainer.venv_train


def test_drop_in_for_gail(tmp_path, pendulum_trajectories):
    def kwargs():
        venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
        return dict(
            demonstrations=pendulum_trajectories,
            demo_batch_size=64,
            venv=venv,
            gen_algo=SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64),
            gen_train_timesteps=200,
            log_dir=tmp_path,
            allow_variable_horizon=False,
        )

    gail_kwargs = kwargs()
    reward_net = BasicRewardNet(gail_kwargs["venv"].observation_space, gail_kwargs["venv"].action_space,
                                normalize_input_layer=RunningNorm)
    gail = GAIL(**gail_kwargs, reward_net=reward_net)
    ours = DiffusionScoreIL(**kwargs(), expert_fit_steps=50)
    for trainer in (gail, ours):
        trainer.train(200)
        assert trainer.gen_algo.num_timesteps == 200
        assert trainer.policy is trainer.gen_algo.policy
        for attr in ("venv_wrapped", "venv_train", "reward_train", "reward_test", "gen_callback", "logger"):
            assert getattr(trainer, attr) is not None


# -- persistence ------------------------------------------------------------------------


# A value other than the default for every setting (each still valid for Pendulum and its states).
OTHER_SETTINGS = dict(
    conditioning="state", drop_state_coordinates=[2], diffusion_steps=500, score_net_kwargs={"hidden_sizes": (64,)},
    score_opt_cls=th.optim.Adam, score_opt_kwargs={"lr": 2e-3}, expert_fit_steps=30, learner_fit_steps=7,
    learner_buffer_size=5_000, cost_timesteps=8, cost_precision="float32", relabel_refresh=300,
    reward_saturation=0.5, reward_std=None, absorbing_states=False,
)


def test_other_settings_cover_every_setting():
    from sb3_diffusion_il.settings import Settings

    defaults = Settings().to_dict()
    other = Settings(**OTHER_SETTINGS).to_dict()
    assert set(OTHER_SETTINGS) == set(defaults)
    assert [name for name in defaults if other[name] == defaults[name]] == ["conditioning"]


def test_save_load_keeps_networks_and_settings(tmp_path, venv, sac, pendulum_states):
    trainer = make_trainer(venv, sac, pendulum_states, **{**OTHER_SETTINGS, "expert_fit_steps": 10_000},
                           demo_batch_size=128, gen_train_timesteps=200, seed=3)
    trainer.pretrain_expert(n_steps=30, progress_bar=False)
    trainer.train(200, progress_bar=False)
    trainer.save(tmp_path / "scores.pt")
    loaded = DiffusionScoreIL.load(tmp_path / "scores.pt", demonstrations=pendulum_states, venv=venv, gen_algo=sac)
    assert loaded.settings == trainer.settings and loaded.settings.score_opt_cls is th.optim.Adam
    assert isinstance(loaded.scores.learner_opt, th.optim.Adam)
    assert (loaded.demo_batch_size, loaded.gen_train_timesteps, loaded.seed) == (128, 200, 3)
    assert loaded.reward_std is None and loaded.reward_train.base.n_timesteps == 8
    # The trained reward itself, as reward_test evaluates it.
    args = (pendulum_states[:8], np.zeros((8, 1), np.float32), pendulum_states[:8], np.zeros(8, bool))
    rewards = [t.reward_test.predict_processed(*args) for t in (trainer, loaded)]
    np.testing.assert_array_equal(*rewards)
    x = th.as_tensor(trainer.features(pendulum_states[:100]))
    for name in ("expert_score_net", "learner_score_net"):
        a, b = getattr(trainer, name), getattr(loaded, name)
        assert th.equal(a.normalize(x), b.normalize(x))
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert th.equal(pa, pb)
    # A loaded expert score is reused, not refitted.
    before = loaded.expert_score_net.fitted_steps.item()
    loaded.train(200, progress_bar=False)
    assert loaded.expert_score_net.fitted_steps.item() == before


@pytest.mark.parametrize("conditioning", ["state", "state_next_state"])
def test_dropped_state_coordinates_leave_the_cost(tmp_path, venv, sac, pendulum_trajectories, conditioning):
    trainer = make_trainer(venv, sac, pendulum_trajectories, conditioning=conditioning, drop_state_coordinates=[0])
    assert trainer.expert_score_net.dim == (2 if conditioning == "state" else 4)
    trainer.train(200, progress_bar=False)
    reward = trainer.reward_train
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    moved = obs.copy()
    moved[:, 0] += 0.5  # only the dropped coordinate

    def rewards(states):
        trainer.generator.manual_seed(0)  # the same noise for both
        return reward.predict(states, np.zeros((5, 1), np.float32), states, np.zeros(5, bool))

    assert np.array_equal(rewards(obs), rewards(moved))
    moved[:, 1] += 0.5
    assert not np.array_equal(rewards(obs), rewards(moved))
    trainer.save(tmp_path / "scores.pt")
    loaded = DiffusionScoreIL.load(
        tmp_path / "scores.pt", demonstrations=pendulum_trajectories, venv=venv, gen_algo=sac,
    )
    assert loaded.featurizer.dropped == (0,) and loaded.reward_train.base.state_coordinates == [1, 2]


def test_load_of_a_checkpoint_saved_on_a_gpu(tmp_path, venv, sac, pendulum_states):
    make_trainer(venv, sac, pendulum_states).save(tmp_path / "scores.pt")
    state = th.load(tmp_path / "scores.pt", weights_only=True)
    # A CUDA generator's state is 16 bytes (seed and offset); a CPU generator cannot take it.
    state["generator"], state["generator_device"] = th.arange(16, dtype=th.uint8), "cuda"
    th.save(state, tmp_path / "from_gpu.pt")
    runs = [DiffusionScoreIL.load(tmp_path / "from_gpu.pt", demonstrations=pendulum_states, venv=venv, gen_algo=sac)
            for _ in range(2)]
    draws = [th.rand(3, generator=run.generator) for run in runs]
    assert th.equal(draws[0], draws[1])  # seeded from the saved state, deterministically


def as_release_0_1_0(state, **settings):
    """A checkpoint as sb3-diffusion-il 0.1.0 (format 2) wrote it."""
    saved = {**state["settings"], **state.pop("trainer"), "learner_refit": "fresh", "feature_std_floor": 0.0,
             "saturation_states": "newest", "reward_normalization": "mean_std", **settings}
    del saved["score_net_kwargs"], saved["score_opt_cls"]
    return {**state, "format": 2, "settings": saved}


def test_checkpoint_of_release_0_1_0_loads_or_is_refused(tmp_path, venv, sac, pendulum_states):
    make_trainer(venv, sac, pendulum_states, cost_timesteps=8).save(tmp_path / "scores.pt")
    state = th.load(tmp_path / "scores.pt", weights_only=True)
    th.save(as_release_0_1_0(dict(state)), tmp_path / "old.pt")
    loaded = DiffusionScoreIL.load(tmp_path / "old.pt", demonstrations=pendulum_states, venv=venv, gen_algo=sac)
    assert loaded.settings.cost_timesteps == 8
    old = as_release_0_1_0(dict(state))
    del old["settings"]["learner_refit"]  # saved before the setting existed, when every refit was warm
    th.save(old, tmp_path / "older.pt")
    with pytest.raises(ValueError, match="learner_refit='warm'.*sb3-diffusion-il 0.1.0.*commit, cced7ef"):
        DiffusionScoreIL.load(tmp_path / "older.pt", demonstrations=pendulum_states, venv=venv, gen_algo=sac)


def test_load_refuses_another_task(tmp_path, venv, sac, pendulum_states):
    make_trainer(venv, sac, pendulum_states).save(tmp_path / "scores.pt")
    other = make_vec_env("MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="task it was trained on"):
        DiffusionScoreIL.load(tmp_path / "scores.pt", demonstrations=np.zeros((10, 2), np.float32),
                              venv=other, gen_algo=SAC("MlpPolicy", other))


def test_pretrained_expert_is_reused_across_runs(venv, sac, pendulum_states):
    first = make_trainer(venv, sac, pendulum_states)
    first.pretrain_expert(progress_bar=False)
    sac2 = SAC("MlpPolicy", venv, seed=1, learning_starts=100, batch_size=64)
    second = make_trainer(venv, sac2, pendulum_states, expert_score_net=first.expert_score_net)
    steps = second.expert_score_net.fitted_steps.item()
    second.train(200, progress_bar=False)
    assert second.expert_score_net.fitted_steps.item() == steps


def test_given_learner_score_net_fits_in_the_experts_normalisation(venv, sac, pendulum_states):
    learner_net = ScoreNetwork(3)
    trainer = make_trainer(venv, sac, pendulum_states, learner_score_net=learner_net)
    assert th.equal(learner_net.mean, trainer.expert_score_net.mean)
    assert th.equal(learner_net.std, trainer.expert_score_net.std)
    assert not th.equal(learner_net.mean, th.zeros(3))


def test_fresh_learner_refit_starts_each_round_from_new_weights(venv, sac, pendulum_states):
    trainer = make_trainer(venv, sac, pendulum_states, learner_fit_steps=0)
    trainer.train(400, progress_bar=False)  # two rounds, no fitting: only the re-initialisation
    expert = trainer.expert_score_net.state_dict()
    weights = [trainer.learner_score_net.state_dict()["mlp.0.weight"].clone()]
    global_rng = th.get_rng_state()
    trainer.train_learner_score()
    assert th.equal(th.get_rng_state(), global_rng)  # new weights drawn from the trainer's generator alone
    weights.append(trainer.learner_score_net.state_dict()["mlp.0.weight"])
    assert not th.equal(weights[0], expert["mlp.0.weight"]) and not th.equal(weights[0], weights[1])
    assert th.equal(trainer.learner_score_net.std, trainer.expert_score_net.std)


def test_reward_evaluated_between_rounds_changes_nothing(venv, pendulum_states):
    def two_rounds(evaluate: bool):
        sac = SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
        trainer = make_trainer(venv, sac, pendulum_states)
        values = []

        def callback(round_):
            if evaluate:
                obs = pendulum_states[:8]
                args = (obs, np.zeros((8, 1), np.float32), obs, np.zeros(8, bool))
                values.append([trainer.reward_test.predict_processed(*args) for _ in range(2)])

        trainer.train(400, callback=callback, progress_bar=False)
        return [p.detach().clone() for p in sac.policy.parameters()], values

    plain, _ = two_rounds(False)
    evaluated, values = two_rounds(True)
    assert all(th.equal(a, b) for a, b in zip(plain, evaluated))
    assert all(np.array_equal(first, second) for first, second in values)  # the same values twice
