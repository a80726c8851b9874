import pytest
import seals  # noqa: F401  (registers the seals/* tasks)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_diffusion_il.positions import unbounded_positions


@pytest.mark.parametrize("env_id, expected", [
    ("seals/Hopper-v1", [0]),  # rootx, a slide joint along x without a range
    ("seals/HalfCheetah-v1", [0]),
    ("seals/Walker2d-v1", [0]),
    ("seals/Ant-v1", [0, 1]),  # the free joint's x and y, not its height
    ("HalfCheetah-v4", []),  # gymnasium's own version already leaves x out
    ("InvertedPendulum-v4", []),  # the cart's slide joint has a range: a bounded position
    ("Pendulum-v1", []),  # not MuJoCo
])
def test_unbounded_positions_are_read_from_the_mujoco_model(env_id, expected):
    assert unbounded_positions(make_vec_env(env_id, n_envs=2)) == expected


def test_unbounded_positions_through_vec_normalize_without_gymnasiums_warning(recwarn):
    assert unbounded_positions(VecNormalize(make_vec_env("seals/Ant-v1", n_envs=1))) == [0, 1]
    assert not [w for w in recwarn if "get variables from other wrappers" in str(w.message)]


def test_an_observation_that_is_not_the_state_drops_nothing():
    # Ant with contact forces observes more than its positions and velocities.
    venv = make_vec_env("Ant-v4", n_envs=1, env_kwargs={"exclude_current_positions_from_observation": False,
                                                       "use_contact_forces": True})
    assert unbounded_positions(venv) == []
