"""Demonstrations: every type imitation accepts, the bundled files, bad input."""

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from imitation.data import rollout, types

from sb3_diffusion_il import data, expert_stats, load_demonstrations, normalized_return
from sb3_diffusion_il.benchmark.tasks import TASKS, get_task, steady_at


def test_every_bundled_task_loads_offline_with_a_clear_expert_gap():
    ids = data.bundled_env_ids()
    assert "Pendulum-v1" in ids
    for env_id in ids:
        trajectories = load_demonstrations(env_id)
        stats = expert_stats(env_id)
        assert len(trajectories) >= 10
        assert all(isinstance(t, types.TrajectoryWithRew) for t in trajectories)
        assert all(t.obs.dtype == np.float32 for t in trajectories)
        returns = [float(t.rews.sum()) for t in trajectories]
        assert np.mean(returns) == pytest.approx(stats["expert_return_mean"], rel=1e-3)
        gap = stats["expert_return_mean"] - stats["random_return_mean"]
        assert gap > 3 * max(stats["random_return_std"], stats["expert_return_std"]), env_id
        assert normalized_return(env_id, stats["expert_return_mean"]) == pytest.approx(1.0)
        assert normalized_return(env_id, stats["random_return_mean"]) == pytest.approx(0.0)


def test_n_episodes():
    assert len(load_demonstrations("Pendulum-v1", n_episodes=3)) == 3
    with pytest.raises(ValueError, match="between 1 and"):
        load_demonstrations("Pendulum-v1", n_episodes=0)


def test_unknown_env_id_says_it_is_not_a_task():
    with pytest.raises(ValueError, match=r"No task 'NoSuchTask-v0' is registered with gymnasium.*Pendulum-v1"):
        load_demonstrations("NoSuchTask-v0")


def test_a_task_without_bundled_demonstrations_says_how_to_make_them():
    with pytest.raises(ValueError, match=r"'Humanoid-v4' is a gymnasium task, but no expert demonstrations.*"
                                         r"sb3-diffusion-il make-demos Humanoid-v4"):
        load_demonstrations("Humanoid-v4")


def test_truncated_or_corrupt_file_is_refused_naming_it(tmp_path, monkeypatch):
    for path in (data.demo_path("Pendulum-v1"), data.manifest_path("Pendulum-v1")):
        shutil.copy(path, tmp_path)
    monkeypatch.setattr(data, "DEMO_DIR", tmp_path)
    path = data.demo_path("Pendulum-v1")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=str(path)):
        load_demonstrations("Pendulum-v1")
    # Without a checksum, the archive itself is found broken.
    with pytest.raises(ValueError, match="corrupt or truncated"):
        data.read_trajectories(path)


def test_save_and_read_roundtrip(tmp_path, pendulum_trajectories):
    sha = data.save_trajectories(tmp_path / "d.npz", pendulum_trajectories[:2])
    back = data.read_trajectories(tmp_path / "d.npz", sha)
    for a, b in zip(back, pendulum_trajectories[:2]):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.acts, b.acts)
        np.testing.assert_array_equal(a.rews, b.rews)


def test_all_demonstration_types_give_the_same_features(pendulum_trajectories):
    trajectories = pendulum_trajectories[:2]
    transitions = rollout.flatten_trajectories(trajectories)
    minimal = types.TransitionsMinimal(obs=transitions.obs, acts=transitions.acts, infos=transitions.infos)
    dicts = [
        {key: th.tensor(getattr(transitions, key)[i : i + 50]) for key in ("obs", "acts", "next_obs")}
        for i in range(0, len(transitions), 50)
    ]
    expected = transitions.next_obs
    for demos in (trajectories, transitions, dicts):
        np.testing.assert_allclose(data.to_arrays(demos).features("state"), expected)
        assert data.to_arrays(demos).features("state_action").shape == (len(expected), 4)
        assert data.to_arrays(demos).features("state_next_state").shape == (len(expected), 6)
    # Data without next states is diffused as the states it holds.
    np.testing.assert_allclose(data.to_arrays(minimal).features("state"), transitions.obs)
    np.testing.assert_allclose(data.to_arrays(transitions.obs).features("state"), transitions.obs)


@pytest.mark.parametrize(
    "demos, match",
    [
        (None, "No demonstrations"),
        (np.zeros((0, 3)), "0 states"),
        (np.zeros((5, 3, 2)), "must be vectors.*observation_space"),
        (np.array([[0.0, np.nan, 1.0], [0.0, 0.0, 1.0]]), "non-finite"),
        ([{"acts": np.zeros((2, 1))}], "'obs' key"),
        ([], "the sequence is empty.*load_demonstrations"),
    ],
)
def test_bad_demonstrations(demos, match):
    with pytest.raises((ValueError, TypeError), match=match):
        data.to_arrays(demos)


def test_state_action_needs_actions():
    with pytest.raises(ValueError, match="needs demonstrations with actions"):
        data.to_arrays(np.zeros((4, 3))).features("state_action")


def test_bundled_data_fits_the_30_mb_budget():
    total = sum(p.stat().st_size for p in data.DEMO_DIR.iterdir())
    assert total <= 30 * 2**20, total


def test_seals_tasks_have_fixed_horizons():
    assert all(t.fixed_horizon for env_id, t in TASKS.items() if env_id.startswith("seals/"))


@pytest.mark.parametrize("env_id", data.bundled_env_ids())
def test_bundled_expert_was_made_as_its_task_is_registered(env_id):
    task = get_task(env_id)
    stats = expert_stats(env_id)
    if task.recorded_from:  # made from another task's expert (tests/test_experts.py replays them)
        assert stats["recorded_from"] == task.recorded_from and stats["fixed_horizon"] == task.fixed_horizon
        return
    assert stats["expert_algo"] == task.expert_algo and stats["fixed_horizon"] == task.fixed_horizon
    # The whole budget, or stopped early once steady at the task's target.
    assert stats["expert_timesteps"] >= task.expert_timesteps or (
        task.expert_target is not None and steady_at(stats["learning_curve"], task.expert_target)
    )


def test_a_dict_of_state_arrays_for_a_dict_space():
    space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (3,)), "b": gym.spaces.Box(-1, 1, (2,))})
    states = {"a": np.zeros((4, 3), np.float32), "b": np.ones((4, 2), np.float32)}
    arrays = data.to_arrays(states, space)
    np.testing.assert_array_equal(arrays.obs, np.concatenate([states["a"], states["b"]], axis=1))
    assert arrays.acts is None
