"""Train an SB3 expert (SAC or PPO, as the task says) and write its demonstrations and manifest.

Run ``python -m sb3_diffusion_il.benchmark.experts ENV_ID`` (or ``sb3-diffusion-il make-demos
ENV_ID``). Training is resumable: the model, its replay buffer (SAC), its
``VecNormalize`` statistics (where it trains on them) and the learning curve are
checkpointed in ``--work-dir`` after every evaluation, and a rerun continues from there.
"""

import argparse
import json
import pathlib
import platform
from importlib import metadata
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
import seals  # noqa: F401  (registers the seals/* tasks)
from imitation.data import rollout, types
from imitation.data.wrappers import RolloutInfoWrapper
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_diffusion_il import commands, data, files
from sb3_diffusion_il.benchmark import ended_early
from sb3_diffusion_il.benchmark.tasks import get_task, steady_at

ALGOS = {"SAC": SAC, "PPO": PPO}
# The checkpoint's files in the work dir.
MODEL, REPLAY_BUFFER, VEC_NORMALIZE, CURVE = "expert.zip", "replay_buffer.pkl", "vec_normalize.pkl", "curve.json"
# Deterministic episodes per point of an expert's learning curve.
EVAL_EPISODES = 5


def make_venv(env_id: str, seed: int, n_envs: int = 1, env_kwargs: Optional[Dict[str, Any]] = None):
    """A VecEnv whose episodes imitation's rollout collector can record."""
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=RolloutInfoWrapper, env_kwargs=env_kwargs)


def deterministic_actions(model: BaseAlgorithm) -> rollout.PolicyCallable:
    """``model``'s deterministic actions on the env's raw observations, normalised first
    as in training when the model trained on ``VecNormalize``."""
    normalize = model.get_vec_normalize_env()

    def act(observations, states, episode_starts):
        if normalize is not None:
            observations = normalize.normalize_obs(observations)
        return model.predict(observations, state=states, episode_start=episode_starts, deterministic=True)

    return act


def record(
    policy: Optional[rollout.PolicyCallable], env_id: str, n_episodes: int, seed: int,
) -> List[types.TrajectoryWithRew]:
    """Episodes of ``policy`` (random actions when None), in the env's raw units."""
    venv = make_venv(env_id, seed)
    rng = np.random.default_rng(seed)
    trajectories = rollout.rollout(policy, venv, rollout.make_sample_until(min_episodes=n_episodes), rng=rng)
    venv.close()
    return list(trajectories)[:n_episodes]


def upright_fraction(env_id: str, observations: np.ndarray) -> Optional[float]:
    """The fraction of ``observations`` in which the body is upright by the env's own
    ``is_healthy`` (gymnasium's healthy ranges: torso height and angle for Hopper and
    Walker2d, torso height for Ant); None for a task without one.

    The state is read back from the observation, so it must hold every position and
    velocity, as seals' MuJoCo tasks' observations do (they keep x).
    """
    env = gym.make(env_id).unwrapped
    # gymnasium's MuJoCo envs drop x (and y) from the observation unless told not to.
    if not hasattr(env, "is_healthy") or getattr(env, "_exclude_current_positions_from_observation", True):
        return None
    nq, nv = env.model.nq, env.model.nv
    healthy = []
    for obs in observations:
        env.set_state(obs[:nq], obs[nq:nq + nv])
        healthy.append(bool(env.is_healthy))
    env.close()
    return float(np.mean(healthy))


def _returns(trajectories: Sequence[types.TrajectoryWithRew]) -> np.ndarray:
    return np.array([t.rews.sum() for t in trajectories], dtype=np.float64)


def versions() -> Dict[str, str]:
    names = ["stable-baselines3", "imitation", "gymnasium", "mujoco", "torch", "numpy"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def train_expert(
    env_id: str,
    work_dir: pathlib.Path,
    total_timesteps: int,
    seed: int,
    eval_every: int,
    algo_kwargs: Dict[str, Any],
    progress_bar: bool = False,
    algo: str = "SAC",
    n_envs: int = 1,
    normalize: Union[bool, Mapping[str, bool]] = False,
    env_kwargs: Optional[Dict[str, Any]] = None,
    target: Optional[float] = None,
) -> BaseAlgorithm:
    """Trains (or resumes training) an expert, recording its learning curve.

    :param algo_kwargs: the learner's settings beyond SB3's defaults
    :param progress_bar: show SB3's progress bar while training
    :param algo: ``"SAC"`` or ``"PPO"``
    :param n_envs: environments trained on side by side
    :param normalize: train on ``VecNormalize`` (rewards discounted with ``algo_kwargs``'
        ``gamma``): True normalises observations and rewards, a mapping gives its settings
    :param env_kwargs: settings of the env trained on, beyond ``env_id``'s; the
        evaluations are on ``env_id`` as registered
    :param target: stop early once the learning curve is steady at this return or
        above (`tasks.steady_at`)
    """
    algo_cls = ALGOS[algo]
    off_policy = algo_cls is SAC
    venv = make_venv(env_id, seed, n_envs, env_kwargs)
    if (work_dir / MODEL).exists():
        # Resumed with the task's learning rate (its schedule may have changed since).
        model = load_model(work_dir, algo, venv, normalize, algo_kwargs.get("learning_rate"))
        if off_policy:
            model.load_replay_buffer(work_dir / REPLAY_BUFFER)
            _grow_replay_buffer(model, total_timesteps)
        curve = json.loads((work_dir / CURVE).read_text())
    else:
        if normalize:
            settings = normalize if isinstance(normalize, Mapping) else {}
            venv = VecNormalize(venv, gamma=algo_kwargs.get("gamma", 0.99), **settings)
        # A buffer of the whole budget keeps every transition, as SB3's default
        # 1M does for these budgets, without allocating (and checkpointing) 1M rows.
        buffer = {"buffer_size": total_timesteps} if off_policy else {}
        model = algo_cls("MlpPolicy", venv, seed=seed, verbose=0, **buffer, **algo_kwargs)
        curve = []
    checkpoint = _EvaluateAndCheckpoint(env_id, seed, eval_every, curve, work_dir, normalize, target)
    # One call over the rest of the budget, so that a learning-rate schedule runs
    # over the whole budget, resumed or not.
    if model.num_timesteps < total_timesteps and not checkpoint.steady:
        model.learn(total_timesteps - model.num_timesteps, callback=checkpoint, reset_num_timesteps=False,
                    progress_bar=progress_bar)
    if not checkpoint.steady:  # else the last evaluation was of the final policy
        checkpoint.evaluate_and_save()  # the final policy, after its last update
    return model


def load_model(
    work_dir: pathlib.Path, algo: str, venv: VecEnv, normalize: bool, learning_rate: Any = None,
) -> BaseAlgorithm:
    """The expert checkpointed in ``work_dir``, on ``venv`` (wrapped in its saved
    ``VecNormalize`` statistics when it trained on them; still updating them, as in training).

    :param algo: ``"SAC"`` or ``"PPO"``, as it trained
    :param normalize: whether it trained on ``VecNormalize``
    :param learning_rate: the rate (or schedule) to go on with (None: the saved one)
    """
    if normalize:
        venv = VecNormalize.load(str(work_dir / VEC_NORMALIZE), venv)
    custom_objects = {} if learning_rate is None else {"learning_rate": learning_rate}
    return ALGOS[algo].load(work_dir / MODEL, env=venv, custom_objects=custom_objects)


def evaluation_returns(model: BaseAlgorithm, env_id: str, seed: int) -> np.ndarray:
    """The returns of one learning-curve evaluation of ``model``: ``EVAL_EPISODES``
    deterministic episodes from ``seed``."""
    return _returns(record(deterministic_actions(model), env_id, EVAL_EPISODES, seed=seed))


class _EvaluateAndCheckpoint(BaseCallback):
    """Every ``eval_every`` env steps: the learning curve's next point (`evaluation_returns`),
    then the checkpoint (model, replay buffer, VecNormalize statistics, curve)."""

    def __init__(self, env_id: str, seed: int, eval_every: int, curve: List[List[float]], work_dir: pathlib.Path,
                 normalize: bool, target: Optional[float] = None):
        super().__init__()
        self.env_id, self.seed, self.eval_every, self.curve = env_id, seed, eval_every, curve
        self.work_dir, self.normalize, self.target = work_dir, normalize, target

    @property
    def steady(self) -> bool:
        """Whether training is to stop: the curve is steady at the target (`tasks.steady_at`)."""
        return self.target is not None and steady_at(self.curve, self.target)

    def _on_step(self) -> bool:
        return not self.steady

    def _on_rollout_start(self) -> None:
        # At a rollout's start the policy has had the previous rollout's update.
        if self.num_timesteps >= (self.curve[-1][0] if self.curve else 0) + self.eval_every:
            self.evaluate_and_save()

    def evaluate_and_save(self) -> None:
        if self.curve and self.curve[-1][0] == self.model.num_timesteps:
            return
        model = self.model
        returns = evaluation_returns(model, self.env_id, seed=self.seed + model.num_timesteps)
        self.curve.append([model.num_timesteps, float(returns.mean()), float(returns.std())])
        print(f"{self.env_id}: {model.num_timesteps} steps, eval return {returns.mean():.1f} +- {returns.std():.1f}",
              flush=True)
        # Write the buffer and model before the curve: a curve entry implies both
        # exist. Each under a temporary name, then renamed: a run killed while
        # writing leaves the previous checkpoint whole, to resume from.
        self.work_dir.mkdir(parents=True, exist_ok=True)
        saves = [(REPLAY_BUFFER, model.save_replay_buffer)] if isinstance(model, SAC) else []
        saves += [(VEC_NORMALIZE, model.get_vec_normalize_env().save)] if self.normalize else []
        for name, save in saves + [(MODEL, model.save)]:
            path = self.work_dir / name
            temporary = path.with_name(f"{path.stem}.tmp{path.suffix}")
            save(temporary)
            temporary.replace(path)
        files.atomic_write_bytes(self.work_dir / CURVE, json.dumps(self.curve).encode())


def _grow_replay_buffer(model: SAC, size: int) -> None:
    """Enlarges the replay buffer to ``size`` rows when a run resumes with a larger
    budget, keeping the stored transitions in the order they were collected."""
    old = model.replay_buffer
    if old.buffer_size >= size:
        return
    new = ReplayBuffer(size, old.observation_space, old.action_space, device=old.device, n_envs=old.n_envs)
    n = old.size()
    oldest_first = np.roll(np.arange(old.buffer_size), -old.pos) if old.full else np.arange(n)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        getattr(new, name)[:n] = getattr(old, name)[oldest_first]
    new.pos = n
    model.replay_buffer = new


def plot_curve(curve: List[List[float]], env_id: str, path: pathlib.Path, algo: str = "SAC") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, mean, std = (np.array(c) for c in zip(*curve))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, mean)
    ax.fill_between(steps, mean - std, mean + std, alpha=0.3)
    ax.set(xlabel="env steps", ylabel="eval return (5 episodes)", title=f"{algo} expert: {env_id}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def make_demonstrations(
    env_id: str,
    out_dir: pathlib.Path,
    work_dir: pathlib.Path,
    total_timesteps: Optional[int] = None,
    n_episodes: int = 10,
    seed: int = 0,
    eval_every: Optional[int] = None,
    progress_bar: bool = False,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Trains the expert, records demonstrations and writes the manifest.

    :param env_id: the task
    :param out_dir: where the demonstrations and manifest are written
    :param work_dir: the expert's checkpoints; training resumes from them
    :param total_timesteps: the expert's budget (default: the task's)
    :param n_episodes: demonstration episodes to record
    :param seed: seed of the expert and of the recorded episodes
    :param eval_every: env steps between evaluations (default: the task's)
    :param progress_bar: show SB3's progress bar while the expert trains
    :param command: the command line that made them, recorded in the manifest
    :return: the manifest
    """
    task = get_task(env_id)
    if task.recorded_from:
        random = record(None, env_id, n_episodes, seed=seed + 2000)
        return ended_early.make_demonstrations(env_id, task.recorded_from, out_dir, random, command=command,
                                               versions=versions())
    total_timesteps = total_timesteps or task.expert_timesteps
    eval_every = eval_every or task.eval_every
    algo_kwargs = dict(task.expert_kwargs)
    model = train_expert(
        env_id, work_dir, total_timesteps, seed, eval_every, algo_kwargs, progress_bar, task.expert_algo,
        task.expert_n_envs, task.expert_normalize, dict(task.expert_env_kwargs), task.expert_target,
    )
    expert = record(deterministic_actions(model), env_id, n_episodes, seed=seed + 1000)
    random = record(None, env_id, n_episodes, seed=seed + 2000)
    sha256 = data.save_trajectories(data.demo_path(env_id, out_dir), expert)
    curve = json.loads((work_dir / CURVE).read_text())
    plot_curve(curve, env_id, out_dir / f"{data.demo_path(env_id).stem}_expert_curve.png", task.expert_algo)
    manifest = {
        "env_id": env_id,
        "n_episodes": len(expert),
        "expert_return_mean": float(_returns(expert).mean()),
        "expert_return_std": float(_returns(expert).std()),
        "random_return_mean": float(_returns(random).mean()),
        "random_return_std": float(_returns(random).std()),
        "expert_algo": task.expert_algo,
        "expert_kwargs": algo_kwargs,
        "expert_n_envs": task.expert_n_envs,
        "expert_normalize": task.expert_normalize if isinstance(task.expert_normalize, bool)
        else dict(task.expert_normalize),
        "expert_env_kwargs": dict(task.expert_env_kwargs),
        "expert_target": task.expert_target,
        "upright_fraction": upright_fraction(env_id, np.concatenate([t.obs[:-1] for t in expert])),
        "fixed_horizon": task.fixed_horizon,
        "expert_timesteps": model.num_timesteps,
        "seed": seed,
        "learning_curve": curve,
        "sha256": sha256,
        "command": command,
        "versions": versions(),
    }
    # Classes among the settings (a policy's activation_fn) are written by name,
    # schedules by their repr.
    text = json.dumps(manifest, indent=1, default=lambda value: getattr(value, "__name__", repr(value)))
    files.atomic_write_bytes(data.manifest_path(env_id, out_dir), text.encode())
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (``python -m sb3_diffusion_il.benchmark.experts``, ``sb3-diffusion-il make-demos``)."""
    parser.add_argument("env_id", metavar="ENV_ID", help="gymnasium task id, e.g. Pendulum-v1 or seals/Hopper-v1")
    parser.add_argument("--out-dir", type=pathlib.Path, default=data.DEMO_DIR,
                        help="where the demonstrations (.npz) and manifest (.json) go (default: the package's)")
    parser.add_argument("--work-dir", type=pathlib.Path, default=None,
                        help="the expert's checkpoints, to resume from (default: experts/ENV)")
    parser.add_argument("--timesteps", type=commands.positive_int, default=None,
                        help="the expert's budget in env steps (default: the task's)")
    parser.add_argument("--episodes", type=commands.positive_int, default=10,
                        help="demonstration episodes to record (default: 10)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the expert's training and of the recorded episodes (default: 0)")
    parser.add_argument("--eval-every", type=commands.positive_int, default=None,
                        help="env steps between the expert's evaluations, its learning curve (default: the task's)")
    commands.add_progress_bar_argument(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Trains (or resumes) the expert and writes its demonstrations, as ``args`` say."""
    try:
        data.check_env_id(args.env_id)
    except ValueError as e:
        parser.error(str(e))
    work_dir = args.work_dir or pathlib.Path("experts") / data.demo_path(args.env_id).stem
    manifest = make_demonstrations(
        args.env_id, args.out_dir, work_dir, args.timesteps, args.episodes, args.seed, args.eval_every,
        args.progress_bar, args.command_line,
    )
    print(
        f"{args.env_id}: expert {manifest['expert_return_mean']:.1f} +- {manifest['expert_return_std']:.1f}, "
        f"random {manifest['random_return_mean']:.1f} +- {manifest['random_return_std']:.1f}; "
        f"demonstrations in {data.demo_path(args.env_id, args.out_dir)}",
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    commands.run_standalone("python -m sb3_diffusion_il.benchmark.experts", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    main()
