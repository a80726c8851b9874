"""Every observation space imitation's reward nets take, and Dict observations, which they do not.

- `flatten`'s encoding of each space kind, and the errors for demonstrations that differ;
- construction and two rounds for each kind, with an off-policy learner (relabelled
  replay, SB3's DictReplayBuffer for Dict) and with PPO;
- the matrix imitation's adversarial tests build GAIL with (PPO and DQN learners,
  four tasks, DummyVecEnv and SubprocVecEnv, Transitions and a DataLoader, demo
  batch sizes 1 and 128): GAIL runs all 35 cases, and so does DiffusionScoreIL.
"""

import gymnasium as gym
import numpy as np
import pytest
import seals  # noqa: F401  (registers seals/CartPole-v0)
import torch as th
from gymnasium import spaces
from imitation.algorithms import base
from imitation.data import rollout
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from sb3_diffusion_il import DiffusionScoreIL
from sb3_diffusion_il import flatten as fl

FAST = dict(expert_fit_steps=20, learner_fit_steps=2, seed=0)
NESTED = spaces.Dict({
    "goal": spaces.Box(-1, 1, (2,)),
    "robot": spaces.Dict({"joints": spaces.Box(-1, 1, (3,)), "gripper": spaces.MultiBinary(2)}),
    "mode": spaces.Discrete(3),
})
# SB3's learners take Dict observations one level deep.
FLAT_DICT = spaces.Dict({
    "goal": spaces.Box(-1, 1, (2,)), "joints": spaces.Box(-1, 1, (3,)),
    "gripper": spaces.MultiBinary(2), "mode": spaces.Discrete(3),
})
KINDS = {
    "discrete": spaces.Discrete(5),
    "multi_discrete": spaces.MultiDiscrete([2, 3]),
    "multi_binary": spaces.MultiBinary(4),
    "box_2d": spaces.Box(-1, 1, (2, 3)),
    "dict": FLAT_DICT,
}


class SpaceEnv(gym.Env):
    """Random observations of a given space, a 1-D Box action, episodes of 20 steps."""

    action_space = spaces.Box(-1, 1, (1,))

    def __init__(self, observation_space: spaces.Space):
        self.observation_space = observation_space
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 0.0, False, self.t >= 20, {}


def random_trajectories(venv, n_episodes: int = 4):
    return rollout.generate_trajectories(
        None, venv, rollout.make_sample_until(min_episodes=n_episodes), rng=np.random.default_rng(0),
    )


# -- encoding ---------------------------------------------------------------------------


def test_flatten_encodes_every_kind_as_imitation_does():
    x = {"goal": np.array([[0.5, -0.5]]), "mode": np.array([2]),
         "robot": {"gripper": np.array([[1, 0]]), "joints": np.array([[0.1, 0.2, 0.3]])}}
    # Keys in the space's (sorted) order: goal, mode (one-hot), robot: gripper, joints.
    np.testing.assert_allclose(fl.flatten_numpy(NESTED, x), [[0.5, -0.5, 0, 0, 1, 1, 0, 0.1, 0.2, 0.3]], rtol=1e-6)
    assert fl.flat_dim(NESTED) == 10
    assert fl.binary_coordinates(NESTED).tolist() == [False] * 2 + [True] * 5 + [False] * 3
    assert fl.flatten_numpy(spaces.MultiDiscrete([2, 3]), np.array([[1, 2]])).tolist() == [[0, 1, 0, 0, 1]]
    assert fl.flatten_numpy(spaces.Box(-1, 1, (2, 3)), np.arange(6.0).reshape(1, 2, 3)).shape == (1, 6)


def test_demonstrations_whose_dict_keys_or_shapes_differ_name_the_first():
    good = {"goal": np.zeros((4, 2)), "mode": np.zeros(4, int),
            "robot": {"gripper": np.zeros((4, 2)), "joints": np.zeros((4, 3))}}
    fl.check_batch(NESTED, good)
    missing = {k: v for k, v in good.items() if k != "mode"}
    with pytest.raises(ValueError, match="at key 'mode': only the env's observation space has it"):
        fl.check_batch(NESTED, missing)
    reshaped = {**good, "robot": {**good["robot"], "joints": np.zeros((4, 4))}}
    with pytest.raises(ValueError, match=r"at key 'robot' at key 'joints' have shape \(4,\).*\(3,\)"):
        fl.check_batch(NESTED, reshaped)
    # The trainer checks demonstrations against the env's space before anything else.
    venv = DummyVecEnv([lambda: SpaceEnv(FLAT_DICT)])
    ppo = PPO("MultiInputPolicy", venv, n_steps=20, batch_size=20)
    extra = {"goal": np.zeros((4, 2)), "joints": np.zeros((4, 3)), "gripper": np.zeros((4, 2)),
             "mode": np.zeros(4, int), "camera": np.zeros((4, 1))}
    with pytest.raises(ValueError, match="at key 'camera': only these have it"):
        DiffusionScoreIL(demonstrations=[{"obs": extra}], venv=venv, gen_algo=ppo, **FAST)


@pytest.mark.parametrize("space, match", [
    (spaces.Sequence(spaces.Discrete(2)), "Sequence, which is not supported"),
    (spaces.Dict({"image": spaces.Box(0, 255, (8, 8, 3), np.uint8)}), "entry 'image'.*holds images"),
])
def test_unsupported_spaces_say_what_is(space, match):
    with pytest.raises(ValueError, match=match + ".*Supported: Box"):
        fl.check_space(space)


# -- each kind: construction and two rounds -----------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("learner", ["sac", "ppo"])
def test_two_rounds_with_each_space_kind(kind, learner):
    venv = DummyVecEnv([lambda: SpaceEnv(KINDS[kind])])
    policy = "MultiInputPolicy" if kind == "dict" else "MlpPolicy"
    if learner == "sac":
        algo = SAC(policy, venv, learning_starts=10, batch_size=16, seed=0)
    else:
        algo = PPO(policy, venv, n_steps=20, batch_size=20, n_epochs=1, seed=0)
    trainer = DiffusionScoreIL(
        demonstrations=random_trajectories(venv), demo_batch_size=16, venv=venv, gen_algo=algo,
        gen_train_timesteps=20, **FAST,
    )
    assert trainer.expert_data.shape[1] == fl.flat_dim(KINDS[kind])
    # Binary and one-hot coordinates are normalised from {0, 1} to {-1, 1}, not by the expert's spread.
    binary = fl.binary_coordinates(KINDS[kind])
    assert th.all(trainer.expert_score_net.std[th.as_tensor(binary)] == 0.5)
    trainer.train(40, progress_bar=False)
    assert algo.num_timesteps == 40 and len(trainer.learner_buffer) == 40
    if learner == "sac":
        assert isinstance(algo.replay_buffer, DictReplayBuffer) == (kind == "dict")
        stored = algo.replay_buffer.rewards[:40]
        assert np.count_nonzero(stored) > 10  # round 1 relabelled them with the refitted cost


def test_state_action_with_discrete_actions_is_one_hot():
    venv = make_vec_env("FrozenLake-v1", n_envs=1, seed=0)
    dqn = DQN("MlpPolicy", venv, learning_starts=10, batch_size=16, seed=0)
    trainer = DiffusionScoreIL(
        demonstrations=random_trajectories(venv, 20), demo_batch_size=16, venv=venv, gen_algo=dqn,
        conditioning="state_action", gen_train_timesteps=50, allow_variable_horizon=True, **FAST,
    )
    assert trainer.expert_data.shape[1] == 16 + 4
    trainer.train(100, progress_bar=False)


# -- the matrix GAIL is tested on -----------------------------------------------------------

ENVS = {"seals:seals/CartPole-v0": True, "CartPole-v1": False, "Pendulum-v1": True, "FrozenLake-v1": False}
CASES = [
    (env_id, algo) for env_id in ENVS for algo in ("ppo", "dqn") if not (env_id == "Pendulum-v1" and algo == "dqn")
]
VARIANTS = ["dummy", "subproc", "dataloader", "batch_1", "batch_128"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("env_id, algo", CASES)
def test_the_settings_gail_is_tested_with(env_id, algo, variant):
    vec_env_cls = SubprocVecEnv if variant == "subproc" else DummyVecEnv
    venv = make_vec_env(env_id, n_envs=2, seed=0, vec_env_cls=vec_env_cls)
    try:
        transitions = rollout.flatten_trajectories(random_trajectories(venv, 30))
        demo_batch_size = {"batch_1": 1, "batch_128": 128}.get(variant, 32)
        demonstrations = transitions
        if variant == "dataloader":
            demonstrations = base.make_data_loader(transitions, demo_batch_size)
        if algo == "ppo":
            learner = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0)
        else:
            learner = DQN("MlpPolicy", venv, learning_starts=10, batch_size=16, seed=0)
        trainer = DiffusionScoreIL(
            demonstrations=demonstrations, demo_batch_size=demo_batch_size, venv=venv, gen_algo=learner,
            gen_train_timesteps=64, allow_variable_horizon=not ENVS[env_id], **FAST,
        )
        trainer.train(128, progress_bar=False)
        assert learner.num_timesteps == 128
    finally:
        venv.close()

