import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import load_demonstrations

# Small networks on a 2-core CPU: more threads only add contention.
th.set_num_threads(1)


@pytest.fixture
def venv():
    env = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    yield env
    env.close()


@pytest.fixture(scope="session")
def pendulum_trajectories():
    return load_demonstrations("Pendulum-v1")


@pytest.fixture(scope="session")
def pendulum_states(pendulum_trajectories):
    return np.concatenate([t.obs for t in pendulum_trajectories])


@pytest.fixture
def sac(venv):
    return SAC("MlpPolicy", venv, seed=0, learning_starts=100, batch_size=64)
