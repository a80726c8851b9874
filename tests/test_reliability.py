"""Reliability: bad input fails early, checkpoints survive SIGKILL, runs are deterministic, no silent NaN."""

import hashlib
import pathlib
import re
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from imitation.data import types
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import SaveCheckpoints, DiffusionScoreIL, latest_checkpoint
from sb3_diffusion_il.checkpoint import list_checkpoints

FAST = dict(demo_batch_size=64, expert_fit_steps=50, learner_fit_steps=5, gen_train_timesteps=200, seed=0)
RUN_SCRIPT = pathlib.Path(__file__).with_name("resumable_run.py")


def make_trainer(venv, gen_algo, demonstrations, **kwargs):
    return DiffusionScoreIL(demonstrations=demonstrations, venv=venv, gen_algo=gen_algo, **{**FAST, **kwargs})


# -- bad input, raised before any training ------------------------------------------------


@pytest.mark.parametrize("dtype", [np.complex64, np.str_, object])
def test_demonstrations_of_wrong_dtype(venv, sac, pendulum_states, dtype):
    with pytest.raises(ValueError, match="real numbers.*np.asarray"):
        make_trainer(venv, sac, pendulum_states.astype(dtype))


def test_huge_demonstrations_on_unbounded_space_warn(pendulum_states):
    env = make_vec_env("HalfCheetah-v4", n_envs=1, seed=0)
    states = np.zeros((20, env.observation_space.shape[0]), np.float32)
    states[3, 0] = 1e9
    with pytest.warns(UserWarning, match=r"1 demonstration state values.*beyond \+-1e\+06"):
        make_trainer(env, SAC("MlpPolicy", env), states)


def test_demonstrations_outside_bounded_space_warn(venv, sac, pendulum_states):
    with pytest.warns(UserWarning, match="outside the observation space's bounds"):
        make_trainer(venv, sac, pendulum_states * 100)


def test_demonstrations_of_length_zero_or_one(venv, sac, pendulum_trajectories):
    one_step = types.Trajectory(obs=pendulum_trajectories[0].obs[:2], acts=pendulum_trajectories[0].acts[:1],
                                infos=None, terminal=True)
    with pytest.raises(ValueError, match="hold 1 state.*at least 2"):
        make_trainer(venv, sac, [one_step])
    with pytest.raises(ValueError, match="hold 1 state.*at least 2"):
        make_trainer(venv, sac, pendulum_trajectories[0].obs[:1])
    with pytest.raises(ValueError, match="hold 0 states"):
        make_trainer(venv, sac, pendulum_trajectories[0].obs[:0])


def test_demo_batch_size_below_one(venv, sac, pendulum_states):
    with pytest.raises(ValueError, match="demo_batch_size=0 must be at least 1"):
        make_trainer(venv, sac, pendulum_states, demo_batch_size=0)


def test_round_shorter_than_number_of_envs(pendulum_states):
    venv = make_vec_env("Pendulum-v1", n_envs=4, seed=0)
    with pytest.raises(ValueError, match="gen_train_timesteps=2 is less than the 4 environments"):
        make_trainer(venv, SAC("MlpPolicy", venv), pendulum_states, gen_train_timesteps=2)


def test_learner_buffer_that_cannot_be_relabelled(venv, sac, pendulum_states):
    sac.replay_buffer = RolloutBuffer(10, venv.observation_space, venv.action_space)
    with pytest.raises(ValueError, match="RolloutBuffer.*cannot be relabelled.*HER"):
        make_trainer(venv, sac, pendulum_states)


def test_checkpoint_for_other_spaces(tmp_path, venv, sac, pendulum_states):
    make_trainer(venv, sac, pendulum_states).save(tmp_path / "run.pt")
    other = make_vec_env("Pendulum-v1", n_envs=1, seed=0,
                         wrapper_class=lambda env: gym.wrappers.RescaleAction(env, -1.0, 1.0))
    with pytest.raises(ValueError, match=r"saved for spaces.*Box\(-2\.0, 2\.0.*task it was trained on"):
        DiffusionScoreIL.load(tmp_path / "run.pt", demonstrations=pendulum_states, venv=other)


def test_unreadable_checkpoint(tmp_path, venv, pendulum_states):
    path = tmp_path / "round_000001.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="round_000001.pt is not a readable DiffusionScoreIL checkpoint"):
        DiffusionScoreIL.load(path, demonstrations=pendulum_states, venv=venv)


# -- determinism and resume -------------------------------------------------------------


class FixedReset(gym.Wrapper):
    """Every episode starts from one state, so the env reset that resuming implies changes nothing."""

    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=0, options=options)


def fresh_run(demos, rounds=0, seed=0):
    """A new run (SB3 reseeds the process-wide RNGs it draws from), trained for ``rounds``."""
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=seed, wrapper_class=FixedReset)
    sac = SAC("MlpPolicy", venv, seed=seed, learning_starts=100, batch_size=64)
    trainer = make_trainer(venv, sac, demos, seed=seed)
    if rounds:
        trainer.train(rounds * trainer.gen_train_timesteps, progress_bar=False)
    return trainer


def parameters(trainer):
    modules = (trainer.expert_score_net, trainer.learner_score_net, trainer.policy)
    return [p.detach().clone() for m in modules for p in m.parameters()]


def assert_same_parameters(a, b):
    pa, pb = parameters(a), parameters(b)
    assert len(pa) == len(pb)
    assert all(th.equal(x, y) for x, y in zip(pa, pb))


def test_same_seed_gives_same_costs_and_parameters(pendulum_states):
    a = fresh_run(pendulum_states, rounds=2)
    b = fresh_run(pendulum_states, rounds=2)
    assert_same_parameters(a, b)
    x = th.as_tensor(pendulum_states[:256])
    a.generator.manual_seed(1)
    b.generator.manual_seed(1)
    assert th.equal(a.reward_train.base.cost(x), b.reward_train.base.cost(x))
    # The check can fail: another seed gives other parameters.
    c = fresh_run(pendulum_states, rounds=2, seed=1)
    assert not all(th.equal(x, y) for x, y in zip(parameters(a), parameters(c)))


def test_resumed_run_matches_uninterrupted_run(tmp_path, pendulum_states):
    uninterrupted = fresh_run(pendulum_states, rounds=2)
    fresh_run(pendulum_states, rounds=1).save(tmp_path / "run.pt")
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0, wrapper_class=FixedReset)
    resumed = DiffusionScoreIL.load(tmp_path / "run.pt", demonstrations=pendulum_states, venv=venv)
    assert resumed.rounds_done == 1 and resumed.gen_algo.num_timesteps == 200
    resumed.train(200, progress_bar=False)

    assert resumed.rounds_done == uninterrupted.rounds_done == 2
    assert_same_parameters(resumed, uninterrupted)
    assert np.array_equal(resumed.learner_buffer.rows, uninterrupted.learner_buffer.rows)


# -- non-finite guard ---------------------------------------------------------------------


def test_nan_stops_training_and_keeps_last_checkpoint(tmp_path, venv, sac, pendulum_states):
    trainer = make_trainer(venv, sac, pendulum_states)
    trainer.train(200, callback=SaveCheckpoints(trainer, tmp_path), progress_bar=False)
    good = latest_checkpoint(tmp_path)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    with th.no_grad():
        next(trainer.learner_score_net.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="Non-finite (relabelled reward|reward of venv_wrapped) in round 1"):
        trainer.train(200, callback=SaveCheckpoints(trainer, tmp_path), progress_bar=False)
    assert latest_checkpoint(tmp_path) == good
    assert hashlib.sha256(good.read_bytes()).hexdigest() == digest
    DiffusionScoreIL.load(good, demonstrations=pendulum_states, venv=venv)


# -- SIGKILL and resume, in a subprocess --------------------------------------------------


def launch(directory: pathlib.Path, rounds: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUN_SCRIPT), "--dir", str(directory), "--rounds", str(rounds), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def progress_lines(process: subprocess.Popen):
    """The run's own progress lines, among the logger's tables it also prints."""
    for line in process.stdout:
        line = line.strip()
        if re.fullmatch(r"start round \d+|round \d+ done|stalled in write", line):
            yield line


def kill_after(process: subprocess.Popen, line: str, delay: float = 0.0) -> list:
    """SIGKILLs ``process`` ``delay`` seconds after it prints ``line``; returns its progress lines."""
    printed = []
    for out in progress_lines(process):
        printed.append(out)
        if out == line:
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, printed
    return printed


def resume_to_end(directory: pathlib.Path, rounds: int) -> list:
    process = launch(directory, rounds)
    printed = list(progress_lines(process))
    assert process.wait(timeout=600) == 0, printed
    return printed


def assert_checkpoints_whole(directory: pathlib.Path, demos) -> None:
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    for round_, path in list_checkpoints(directory).items():
        assert DiffusionScoreIL.load(path, demonstrations=demos, venv=venv).rounds_done == round_


def test_sigkill_mid_round_then_resume(tmp_path, pendulum_states):
    # Killed one second into round 3: a round takes several seconds.
    printed = kill_after(launch(tmp_path, 4), "round 2 done", delay=1.0)
    assert printed[0] == "start round 0"
    assert list(list_checkpoints(tmp_path)) == [1, 2]
    assert_checkpoints_whole(tmp_path, pendulum_states)
    printed = resume_to_end(tmp_path, 4)
    assert printed == ["start round 2", "round 3 done", "round 4 done"]
    assert list(list_checkpoints(tmp_path)) == [3, 4]


def test_sigkill_while_writing_a_checkpoint_then_resume(tmp_path, pendulum_states):
    kill_after(launch(tmp_path, 3, "--stall-in-write", "3"), "stalled in write")
    assert list(list_checkpoints(tmp_path)) == [1, 2]
    assert len(list(tmp_path.glob(".round_000003.pt.*"))) == 1  # the half-written file
    assert_checkpoints_whole(tmp_path, pendulum_states)
    printed = resume_to_end(tmp_path, 3)
    assert printed == ["start round 2", "round 3 done"]
    assert list(list_checkpoints(tmp_path)) == [2, 3]
    assert not list(tmp_path.glob(".round_*"))
