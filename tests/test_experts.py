"""Expert training: checkpoints that a later session resumes from."""

import json

import gymnasium as gym
import numpy as np
import pytest

from sb3_diffusion_il import data
from sb3_diffusion_il.benchmark import experts
from sb3_diffusion_il.benchmark.experts import deterministic_actions, record, train_expert, upright_fraction
from sb3_diffusion_il.benchmark.tasks import FLAT, AnnealedLR, steady_at

SAC_KWARGS = dict(learning_starts=100, batch_size=64)


def test_training_resumes_from_its_checkpoint(tmp_path):
    train_expert("Pendulum-v1", tmp_path, 300, seed=0, eval_every=150, algo_kwargs=SAC_KWARGS)
    model = train_expert("Pendulum-v1", tmp_path, 450, seed=0, eval_every=150, algo_kwargs=SAC_KWARGS)
    assert model.num_timesteps == 450
    # The buffer grew with the budget and kept the first run's transitions, oldest first.
    assert model.replay_buffer.buffer_size == 450 and model.replay_buffer.size() == 450
    assert [step for step, _, _ in json.loads((tmp_path / "curve.json").read_text())] == [150, 300, 450]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.json", "expert.zip", "replay_buffer.pkl"]


# What each bundled locomotion expert must clear: the mean return of its
# demonstrations (10 deterministic episodes) and, where the body can fall, the
# fraction of their steps it is upright.
COMPETENCE = {
    "seals/Hopper-v1": (2_500, 0.9),
    "seals/Walker2d-v1": (3_000, 0.9),
    "seals/Ant-v1": (2_000, None),
    "seals/HalfCheetah-v1": (6_000, None),
}


@pytest.mark.parametrize("env_id", [env_id for env_id in COMPETENCE if env_id in data.bundled_env_ids()])
def test_bundled_locomotion_expert_is_competent(env_id):
    manifest = data.expert_stats(env_id)
    min_return, min_upright = COMPETENCE[env_id]
    expert = manifest["expert_return_mean"]
    assert manifest["n_episodes"] >= 10
    assert expert >= min_return
    # The learning curve is flat over the last tenth of training.
    last_tenth = [mean for step, mean, _ in manifest["learning_curve"] if step >= 0.9 * manifest["expert_timesteps"]]
    assert last_tenth and all(abs(mean - expert) <= FLAT * expert for mean in last_tenth)
    if min_upright is not None:
        observations = np.concatenate([t.obs[:-1] for t in data.load_demonstrations(env_id)])
        assert manifest["upright_fraction"] == pytest.approx(upright_fraction(env_id, observations))
        assert manifest["upright_fraction"] >= min_upright


def test_upright_fraction_reads_gymnasiums_healthy_range():
    env = gym.make("seals/Hopper-v1")
    standing, _ = env.reset(seed=0)
    lying = standing.copy()
    lying[1] = 0.3  # torso height, below Hopper's healthy 0.7
    assert upright_fraction("seals/Hopper-v1", np.stack([standing, lying, lying, lying])) == 0.25
    assert upright_fraction("seals/HalfCheetah-v1", np.zeros((2, 18))) is None


def test_vec_normalize_expert_resumes_and_records_raw_observations(tmp_path):
    kwargs = dict(n_steps=64, batch_size=32, n_epochs=1)
    train_expert("seals/Hopper-v1", tmp_path, 64, seed=0, eval_every=64, algo_kwargs=kwargs, algo="PPO",
                 normalize=True)
    model = train_expert("seals/Hopper-v1", tmp_path, 128, seed=0, eval_every=64, algo_kwargs=kwargs, algo="PPO",
                         normalize=True)
    assert model.num_timesteps == 128
    # The statistics carried on from the first run's 64 steps.
    assert model.get_vec_normalize_env().obs_rms.count > 128
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.json", "expert.zip", "vec_normalize.pkl"]
    (episode,) = record(deterministic_actions(model), "seals/Hopper-v1", 1, seed=0)
    assert episode.obs[0, 1] == pytest.approx(1.25, abs=0.01)  # raw torso height at reset, not standardised


def test_a_resumed_expert_goes_on_with_the_tasks_learning_rate(tmp_path):
    kwargs = dict(n_steps=64, batch_size=32, n_epochs=1)
    train_expert("Pendulum-v1", tmp_path, 64, seed=0, eval_every=64, algo_kwargs=kwargs, algo="PPO")
    # Trained so far at a constant rate; resumed with the rate falling over the last half.
    annealed = AnnealedLR(1e-3, 0.5)
    model = train_expert("Pendulum-v1", tmp_path, 256, seed=0, eval_every=64,
                         algo_kwargs=dict(kwargs, learning_rate=annealed), algo="PPO")
    assert model.learning_rate == annealed
    assert [annealed(p) for p in (1.0, 0.5, 0.25, 0.0)] == [1e-3, 1e-3, 5e-4, 0.0]
    # The last update (after the last rollout) ran at the schedule's end, not at SB3's 3e-4 saved with the model.
    assert model.policy.optimizer.param_groups[0]["lr"] == 0.0


def test_steady_needs_five_evaluations_in_the_last_tenth_all_at_the_target():
    rising = [[step, 100.0 + step / 10, 0.0] for step in range(0, 1001, 20)]
    assert not steady_at(rising[:2], 0.0)  # one or two evaluations say little
    assert steady_at(rising, 150.0)  # 900 to 1,000: 190 to 200, within 10% of the last
    assert not steady_at(rising, 195.0)  # 190 is below the target
    assert not steady_at(rising[:-1] + [[1000, 300.0, 0.0]], 150.0)  # a jump is not steady
    climbing = [[step, mean, 0.0] for step, mean in zip(range(920, 1001, 20), (4000, 4100, 4300, 4500, 4600))]
    assert not steady_at(climbing, 3000.0)  # within 10% of their mean, not of the last (4,000 is 13% below)


def test_training_stops_once_steady(tmp_path, monkeypatch):
    # Every evaluation returns 1.0: training stops at the first steady curve (5
    # evaluations within the last tenth: 800 steps at 20 a time), not at the budget.
    monkeypatch.setattr(experts, "record", lambda *args, **kwargs: [])
    monkeypatch.setattr(experts, "_returns", lambda trajectories: np.ones(5))
    model = train_expert("Pendulum-v1", tmp_path, 2_000, seed=0, eval_every=20,
                         algo_kwargs=dict(learning_starts=5_000), target=1.0)
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve[-1][0] == 800 and model.num_timesteps <= 801


@pytest.mark.parametrize("env_id, source_id", [("Hopper-v4", "seals/Hopper-v1"), ("Walker2d-v4", "seals/Walker2d-v1")])
def test_demonstrations_of_the_terminating_tasks_are_what_gymnasium_runs(env_id, source_id):
    """Replayed a step at a time from the seals expert's states, gymnasium's env gives the
    same next observations and rewards, and ends the episodes where they end."""
    env = gym.make(env_id).unwrapped
    nq, nv = env.model.nq, env.model.nv
    manifest = data.expert_stats(env_id)
    assert manifest["recorded_from_sha256"] == data.expert_stats(source_id)["sha256"]
    sources, demos = data.load_demonstrations(source_id), data.load_demonstrations(env_id)
    assert [len(t.acts) for t in demos] == manifest["episode_lengths"]
    rng, checked = np.random.default_rng(0), 0
    for source, demo in zip(sources, demos):
        n = len(demo.acts)
        for step in sorted(set(rng.choice(n, 50)) | {n - 1}):
            qpos, qvel = source.obs[step, :nq], source.obs[step, nq:nq + nv]
            if np.abs(qvel).max() >= 10:  # clipped in the observation: not the state
                continue
            env.set_state(qpos, qvel)
            obs, reward, terminated, _, _ = env.step(demo.acts[step])
            np.testing.assert_allclose(obs, demo.obs[step + 1], atol=2e-3)
            assert reward == pytest.approx(demo.rews[step], abs=2e-3)
            assert terminated == (step == n - 1 and n < 1000)
            checked += 1
    assert checked >= 100
    assert manifest["expert_return_mean"] == pytest.approx(np.mean([t.rews.sum() for t in demos]))
