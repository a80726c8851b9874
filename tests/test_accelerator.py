"""DiffusionScoreIL with a learner on a CUDA device (SB3's ``device="auto"`` picks one).

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``python -m pytest tests/test_accelerator.py``.
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import DiffusionScoreIL
from sb3_diffusion_il.benchmark import baselines

pytestmark = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")

FAST = dict(demo_batch_size=64, expert_fit_steps=50, learner_fit_steps=5, gen_train_timesteps=200, seed=0)


def make_sac(device: str) -> SAC:
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    return SAC("MlpPolicy", venv, device=device, seed=0, learning_starts=100, batch_size=64)


def make_trainer(gen_algo, demonstrations, **kwargs) -> DiffusionScoreIL:
    return DiffusionScoreIL(demonstrations=demonstrations, venv=gen_algo.get_env(), gen_algo=gen_algo,
                            **{**FAST, **kwargs})


@pytest.mark.parametrize("conditioning", ["state", "state_action"])
def test_off_policy_learner_on_cuda(pendulum_trajectories, conditioning):
    sac = make_sac("cuda")
    trainer = make_trainer(sac, pendulum_trajectories, conditioning=conditioning)
    trainer.train(400, progress_bar=False)
    for net in (trainer.expert_score_net, trainer.learner_score_net, trainer.schedule):
        assert all(b.is_cuda for b in net.buffers())
    assert trainer.reward_train.device.type == "cuda"
    stored = sac.replay_buffer.rewards[:400]
    assert np.isfinite(stored).all()
    assert np.count_nonzero(stored[:200]) > 100  # round 1 relabelled round 0's transitions
    obs = sac.replay_buffer.observations[:10, 0]
    acts = sac.replay_buffer.actions[:10, 0]
    rewards = trainer.reward_train.predict_processed(obs, acts, obs, np.zeros(10, bool))
    assert rewards.shape == (10,) and np.isfinite(rewards).all()


def test_fresh_refit_leaves_the_global_rngs_as_they_were(pendulum_trajectories):
    # No fitting steps: their batches draw from the global RNG, which checkpoints save.
    trainer = make_trainer(make_sac("cuda"), pendulum_trajectories, learner_fit_steps=0)
    trainer.train(200, progress_bar=False)
    cpu, gpu = th.get_rng_state(), th.cuda.get_rng_state()
    before = trainer.learner_score_net.mlp[0].weight.clone()
    trainer.train_learner_score()
    assert not th.equal(trainer.learner_score_net.mlp[0].weight, before)
    assert th.equal(th.get_rng_state(), cpu) and th.equal(th.cuda.get_rng_state(), gpu)


def test_on_policy_learner_on_cuda(pendulum_trajectories):
    venv = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    ppo = PPO("MlpPolicy", venv, device="cuda", n_steps=100, batch_size=50, n_epochs=1, seed=0)
    trainer = make_trainer(ppo, pendulum_trajectories)
    trainer.train(400, progress_bar=False)
    assert ppo.num_timesteps == 400


@pytest.mark.parametrize("saved_on, loaded_on", [("cuda", "cpu"), ("cpu", "cuda")])
def test_checkpoint_moves_between_devices(tmp_path, pendulum_trajectories, saved_on, loaded_on):
    trainer = make_trainer(make_sac(saved_on), pendulum_trajectories)
    trainer.train(200, progress_bar=False)
    trainer.save(tmp_path / "run.pt")
    loaded = DiffusionScoreIL.load(tmp_path / "run.pt", demonstrations=pendulum_trajectories,
                                   venv=make_vec_env("Pendulum-v1", n_envs=1, seed=0), gen_algo=make_sac(loaded_on))
    for name in ("expert_score_net", "learner_score_net"):
        for a, b in zip(getattr(trainer, name).parameters(), getattr(loaded, name).parameters()):
            assert b.device.type == loaded_on
            assert th.equal(a.cpu(), b.cpu())
    loaded.train(200, progress_bar=False)
    assert loaded.gen_algo.num_timesteps == 200


@pytest.mark.parametrize("method", ["gail", "airl"])
def test_adversarial_baseline_relabels_on_cuda(pendulum_trajectories, method):
    sac = make_sac("cuda")
    trainer = baselines.make_adversarial(method, demonstrations=pendulum_trajectories, demo_batch_size=64,
                                         venv=sac.get_env(), gen_algo=sac, gen_train_timesteps=200)
    with baselines.relabeled(trainer) as relabels:
        trainer.train(400)
    assert relabels
    assert np.isfinite(sac.replay_buffer.rewards[:400]).all()
