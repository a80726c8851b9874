"""The comparison harness: DiffusionScoreIL against imitation's GAIL, AIRL and BC.

One *cell* is (method, task, seed, env-step budget); running it writes one JSON
result file with the learning curve of true returns (10 evaluation episodes
every tenth of the budget), wall-clock time and env steps per second. Cells
already done are skipped, so results accumulate across sessions::

    python -m sb3_diffusion_il.benchmark.compare --tasks Pendulum-v1 --seeds 0 1 2 --workers 2

A *track* is one table (``TRACKS``): the ``short`` one (the default) covers every
task at what this CPU affords; the ``long`` one runs the seals MuJoCo tasks to
300,000 env steps with rl-baselines3-zoo's SAC, evaluated every 5% of the budget,
with ``rl`` (the learner on the true reward) beside the imitation methods. Its
cells checkpoint themselves every 25,000 env steps to ``--work-dir`` and resume
from there when run again::

    python -m sb3_diffusion_il.benchmark.compare --track long --tasks seals/Hopper-v1 --methods rl --seeds 0

(or ``sb3-diffusion-il compare ...``). All methods train the same learner with
the same settings and budget on a task, built as SB3's and imitation's docs
build it (``LEARNERS``); with an off-policy learner the adversarial ones get
replay relabelling too (``variant`` records it).
"""

import argparse
import ast
import contextlib
import dataclasses
import inspect
import json
import pathlib
import re
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import seals  # noqa: F401  (registers the seals/* tasks)
import torch as th
from imitation.util import logger as imit_logger
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import set_random_seed
from tqdm.auto import tqdm

from sb3_diffusion_il import checkpoint, commands, data, files, settings
from sb3_diffusion_il.benchmark import baselines
from sb3_diffusion_il.benchmark.experts import versions
from sb3_diffusion_il.benchmark.tasks import get_task
from sb3_diffusion_il.checkpoint import REMOVED_SETTINGS
from sb3_diffusion_il.settings import Settings
from sb3_diffusion_il.trainer import DiffusionScoreIL

# Bump when a change makes earlier result files incomparable; the report
# ignores files of another version. 2: the importance-sampled, cached cost
# estimate, and GAIL/AIRL relabelling with the reward net in eval mode. 3: the
# learner's reward scale chosen from the learner (reward_std="auto", rewards
# standardised once a round), SB3's default SAC on Pendulum-v1, and
# seals/CartPole-v0 with imitation's tutorial PPO (versions 1 and 2's files
# are kept in benchmarks/results/harness-v1 and harness-v2).
HARNESS_VERSION = 3
# DiffusionScoreIL defaults changed within this harness version, in order, each
# (name, earlier default, whether it changed what fixed-horizon tasks do). A cell
# records how many had been made ("default_changes"), so one made before a change
# keeps its setting by name (`settings_of`) instead of every method's cells being
# re-run for it. Absorbing states change nothing where episodes never end early
# (benchmarks/same_behaviour.py: bit for bit); the third change, what staying
# absorbed is worth (DAC's share of the expert, not the terminal state's reward),
# likewise.
DEFAULT_CHANGES: Tuple[Tuple[str, str, bool], ...] = (
    ("learner_refit", "warm", True), ("absorbing_states", "False", False),
    ("absorbing_states", "terminal-state", False),
)
METHODS = ("diffusion_score", "gail", "airl", "bc", "rl")
# Env-step budget per task, the same for every method (what this CPU affords).
BUDGETS: Dict[str, int] = {
    "seals/CartPole-v0": 200_000,
    "Pendulum-v1": 10_000,
    "InvertedPendulum-v4": 10_000,
    "seals/HalfCheetah-v1": 50_000,
    "seals/Hopper-v1": 50_000,
    "seals/Walker2d-v1": 50_000,
    # gymnasium's own versions, whose episodes end when the body falls.
    "Hopper-v4": 100_000,
    "Walker2d-v4": 100_000,
}
LEARNER_ALGOS = {"SAC": SAC, "PPO": PPO}
DEFAULT_RESULTS_DIR = pathlib.Path("benchmarks/results")


@dataclasses.dataclass(frozen=True)
class Learner:
    """The learner every method trains on a task.

    :param algo: a key of ``LEARNER_ALGOS``
    :param kwargs: its settings beyond SB3's defaults
    :param n_envs: environments it steps side by side
    """

    algo: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    n_envs: int = 1

    def build(self, venv, seed: int) -> BaseAlgorithm:
        return LEARNER_ALGOS[self.algo]("MlpPolicy", venv, seed=seed, **self.kwargs)


# imitation's GAIL tutorial: its PPO, on 8 envs, and its GAIL settings.
TUTORIAL_PPO = Learner(
    "PPO", dict(batch_size=64, ent_coef=0.0, learning_rate=0.0004, gamma=0.95, n_epochs=5), n_envs=8,
)
TUTORIAL_GAIL = dict(demo_batch_size=1024, gen_replay_buffer_capacity=512, n_disc_updates_per_round=8)
# Pendulum-v1 and CartPole learners are built as SB3's and imitation's docs build
# them. The others keep harness version 2's: an initial entropy temperature of
# 0.1 (the reference's; DiffusionScoreIL's reward_std="auto" follows it).
LEARNERS: Dict[str, Learner] = {
    "seals/CartPole-v0": TUTORIAL_PPO,
    "Pendulum-v1": Learner("SAC"),
    "InvertedPendulum-v4": Learner("SAC", dict(learning_rate=1e-3, ent_coef="auto_0.1")),
}
MUJOCO_LEARNER = Learner("SAC", dict(learning_starts=5_000, ent_coef="auto_0.1"))
ADVERSARIAL_KWARGS: Dict[str, Dict[str, Any]] = {"seals/CartPole-v0": TUTORIAL_GAIL}
# rl-baselines3-zoo's SAC for MuJoCo locomotion: SB3's defaults after 10,000 random steps.
ZOO_SAC = Learner("SAC", dict(learning_starts=10_000))
LONG_BUDGET = 300_000


@dataclasses.dataclass(frozen=True)
class Track:
    """One table of the comparison.

    :param budgets: env-step budget per task, the same for every method
    :param methods: the methods run by default
    :param learners: the learner every method trains, per task (``default_learner`` elsewhere)
    :param default_learner: the learner of a task not in ``learners``
    :param n_eval_points: evaluations over the budget, after the one at 0 steps
    :param checkpoint_every: env steps between a cell's checkpoints (None: none)
    :param results_dir: where its result files go by default
    """

    budgets: Mapping[str, int]
    methods: Tuple[str, ...]
    learners: Mapping[str, Learner]
    default_learner: Learner
    n_eval_points: int
    checkpoint_every: Optional[int]
    results_dir: pathlib.Path


TRACKS = {
    "short": Track(BUDGETS, ("diffusion_score", "gail", "airl", "bc"), LEARNERS, MUJOCO_LEARNER, 10, None,
                   DEFAULT_RESULTS_DIR),
    "long": Track(
        {env_id: LONG_BUDGET for env_id in ("seals/HalfCheetah-v1", "seals/Hopper-v1", "seals/Walker2d-v1")},
        ("diffusion_score", "gail", "rl"), {}, ZOO_SAC, 20, 25_000, DEFAULT_RESULTS_DIR / "long-budget",
    ),
}
# Where long cells keep their checkpoints: outside the repository.
DEFAULT_WORK_DIR = pathlib.Path.home() / ".cache" / "sb3-diffusion-il" / "cells"
# Rounds of off-policy learners (imitation's trainers have no default for them);
# on-policy ones take one rollout, both trainers' default.
ROUND_STEPS = 1_000
# DiffusionScoreIL settings with a flag of their own (any other: --set NAME=VALUE).
FLAG_SETTINGS = ("conditioning", "relabel_refresh", "reward_saturation", "reward_std")
# A DiffusionScoreIL cell's variant reads "<learner and delivery>, <...> cost" and then
# ", NAME=VALUE" for each setting the harness was told; a VALUE may itself hold ", ".
SETTING = re.compile(r", (?=\w+=)")
# DiffusionScoreIL arguments the harness itself passes, so ``--set`` may not.
HARNESS_ARGUMENTS = (
    "demonstrations", "venv", "gen_algo", "gen_train_timesteps", "allow_variable_horizon", "custom_logger",
    "log_dir", "seed",
)
BACKENDS = ("process", "ray")
# A cell that fails (raises, or its worker dies) is run this many times more.
CELL_RETRIES = 1
N_EVAL_EPISODES = 10
EVAL_SEED = 100_000
ADVERSARIAL_DEFAULTS = dict(demo_batch_size=512)
BC_EPOCHS = 100
# Every file `Cell.path` names under a results directory, and no other tool's files there.
CELL_FILES = "*/*-seed*-budget*.json"


@dataclasses.dataclass(frozen=True)
class Cell:
    method: str
    env_id: str
    seed: int
    budget: int
    track: str = "short"

    def path(self, results_dir: pathlib.Path) -> pathlib.Path:
        name = f"{self.method}-seed{self.seed}-budget{self.budget}.json"
        return results_dir / data.demo_path(self.env_id).stem / name


def check_choices(methods: Iterable[str], tasks: Iterable[str], track: str = "short") -> None:
    """Raises on a method or task the harness (or its ``track``) does not know, listing the valid ones."""
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}: choose from {list(METHODS)}.")
    budgets = TRACKS[track].budgets
    for task in tasks:
        if task not in budgets:
            raise ValueError(f"Unknown task {task!r} for the {track} track: choose from {list(budgets)}.")


def learner(env_id: str, track: str = "short") -> Learner:
    """The learner every method trains on ``env_id`` in ``track``."""
    return TRACKS[track].learners.get(env_id, TRACKS[track].default_learner)


def is_current(result: Dict[str, Any], version: int = HARNESS_VERSION) -> bool:
    """Whether a result file belongs in the table of harness ``version`` (default: today's):
    at the task's budget in its track and made with its bundled demonstrations."""
    budgets = TRACKS[result.get("track", "short")].budgets
    return (
        result.get("harness_version") == version
        and result.get("budget") == budgets.get(result.get("env_id"))
        and made_with_bundled_demonstrations(result)
    )


def made_with_bundled_demonstrations(result: Dict[str, Any]) -> bool:
    """False when a result records demonstrations other than its task's bundled ones.

    A new expert so drops its task's earlier results, not the other tasks'. Files
    from before results recorded them: harness 3's were all made with today's
    demonstrations; older versions' are history, kept apart.
    """
    recorded = result.get("demonstrations_sha256")
    return recorded is None or recorded == data.expert_stats(result["env_id"])["sha256"]


def trainer_defaults() -> Dict[str, Any]:
    """DiffusionScoreIL's arguments with a default, its method settings among them, and the
    options it no longer has, each with the value it now always has."""
    parameters = inspect.signature(DiffusionScoreIL).parameters.values()
    arguments = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    defaults = Settings()
    method = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    return {**REMOVED_SETTINGS, **arguments, **method}


def other_than_defaults(settings: Mapping[str, Any]) -> Dict[str, str]:
    """``settings`` (DiffusionScoreIL arguments) that differ from today's defaults, values as text."""
    defaults = trainer_defaults()
    return {name: str(value) for name, value in settings.items() if str(value) != str(defaults[name])}


def settings_of(result: Dict[str, Any]) -> Dict[str, str]:
    """The DiffusionScoreIL settings a cell was made with that differ from today's defaults
    (none for the other methods), by name: those the harness was told, and the earlier
    value of each default that changed since (``DEFAULT_CHANGES``)."""
    if result["method"] != "diffusion_score":
        return {}
    if "settings" in result:
        told = dict(result["settings"])
    else:  # files from before results recorded settings as data
        told = dict(setting.split("=", 1) for setting in SETTING.split(result["variant"])[1:])
    for name, earlier, everywhere in DEFAULT_CHANGES[result.get("default_changes", 0):]:
        if everywhere or not get_task(result["env_id"]).fixed_horizon:
            told.setdefault(name, earlier)
    return dict(sorted(other_than_defaults(told).items()))


def made_with(result: Dict[str, Any], diffusion_kwargs: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether a cell was made with these DiffusionScoreIL settings (default: today's defaults)."""
    return result["method"] != "diffusion_score" or settings_of(result) == other_than_defaults(diffusion_kwargs or {})


def train_cell(
    cell: Cell, log_dir: pathlib.Path, diffusion_kwargs: Optional[Mapping[str, Any]] = None,
    work_dir: Optional[pathlib.Path] = None,
) -> Dict[str, Any]:
    """Trains one method on one task and seed; returns the cell's result (what its file holds).

    Both backends run this in their workers; the driver writes the files.

    :param log_dir: where the run's progress logs go (on the worker's machine)
    :param diffusion_kwargs: DiffusionScoreIL settings other than its defaults, to check
        them (the variant names each)
    :param work_dir: where a track that checkpoints keeps its cells' checkpoints (on the
        worker's machine); a cell resumes from its newest one there
    """
    th.set_num_threads(1)  # cells run side by side, one per core
    # BC's policy and the adversarial reward nets draw from the process-wide RNGs.
    set_random_seed(cell.seed)
    task = get_task(cell.env_id)
    track = TRACKS[cell.track]
    spec = learner(cell.env_id, cell.track)
    venv = make_vec_env(cell.env_id, n_envs=spec.n_envs, seed=cell.seed)
    demonstrations = data.load_demonstrations(cell.env_id)
    checkpoints = None
    if track.checkpoint_every and cell.method != "bc":
        checkpoints = CellCheckpoints((work_dir or DEFAULT_WORK_DIR) / cell.path(pathlib.Path()).with_suffix(""))
    saved = checkpoints.latest() if checkpoints else None
    progress = saved[1] if saved else {"curve": [], "eval_seconds": 0.0, "wall_seconds": 0.0}
    curve: List[List[float]] = progress["curve"]
    steps_done = curve[-1][0] if curve else 0
    # A resumed cell logs beside the earlier runs' logs, which a new CSV would overwrite.
    cell_log_dir = log_dir / cell.path(pathlib.Path()).with_suffix("")
    logger = imit_logger.configure(cell_log_dir / f"from-{steps_done}" if saved else cell_log_dir, ["csv"])
    # A resumed cell's evaluations go on from a seed of their own.
    eval_env = make_vec_env(cell.env_id, n_envs=1, seed=EVAL_SEED + cell.seed + steps_done)

    def evaluate(policy, steps: int) -> None:
        start = time.perf_counter()
        mean, std = evaluate_policy(policy, eval_env, n_eval_episodes=N_EVAL_EPISODES, deterministic=True)
        curve.append([steps, float(mean), float(std)])
        progress["eval_seconds"] += time.perf_counter() - start

    start = time.perf_counter() - progress["wall_seconds"]
    if cell.method == "bc":
        trainer = baselines.make_bc(venv, demonstrations, cell.seed, custom_logger=logger)
        trainer.train(n_epochs=BC_EPOCHS, progress_bar=False)
        evaluate(trainer.policy, 0)
        variant, env_steps = f"bc, {BC_EPOCHS} epochs", 0
    else:
        gen_algo = checkpoint.restore_learner(saved[0]["learner"], venv) if saved else spec.build(venv, cell.seed)
        off_policy = isinstance(gen_algo, OffPolicyAlgorithm)
        common = dict(
            demonstrations=demonstrations, venv=venv, gen_algo=gen_algo,
            gen_train_timesteps=ROUND_STEPS if off_policy else None,
            allow_variable_horizon=not task.fixed_horizon, custom_logger=logger, log_dir=log_dir,
        )
        train_kwargs: Dict[str, Any] = {}
        context: Any = contextlib.nullcontext(True)
        if cell.method == "diffusion_score":
            # Episodes that end early need no flag, but without absorbing states.
            common["allow_variable_horizon"] = common["allow_variable_horizon"] and not (diffusion_kwargs or {}).get(
                "absorbing_states", True)
            if saved:
                trainer = DiffusionScoreIL.load(checkpoints.trainer_path(saved[1]), **common)
            else:
                trainer = DiffusionScoreIL(**common, **(diffusion_kwargs or {}), seed=cell.seed)
            arithmetic = "bfloat16" if trainer.reward_train.base.bfloat16 else "float32"
            delivery = "relabelled replay" if off_policy else "reward-wrapped env"
            variant = f"diffusion_score + {spec.algo}, {delivery}, {arithmetic} cost"
            variant += "".join(f", {name}={value}" for name, value in (diffusion_kwargs or {}).items())
            train_kwargs = {"progress_bar": False}
        elif cell.method == "rl":
            trainer = baselines.TrueReward(gen_algo, ROUND_STEPS if off_policy else None)
            variant = f"rl (true reward) + {spec.algo}"
        else:
            adversarial = ADVERSARIAL_KWARGS.get(cell.env_id, ADVERSARIAL_DEFAULTS)
            trainer = baselines.make_adversarial(cell.method, **adversarial, **common)
            context = baselines.relabeled(trainer)
            variant = f"{cell.method} (state-only reward) + {spec.algo}"
            variant += ", relabelled replay" if off_policy else ""
        if saved:
            checkpoints.restore(trainer, saved[0])
        else:
            evaluate(gen_algo.policy, 0)
        eval_every = cell.budget // track.n_eval_points

        def callback(round_: int) -> None:
            steps = gen_algo.num_timesteps
            if steps >= len(curve) * eval_every:
                evaluate(gen_algo.policy, steps)
            if checkpoints and steps >= checkpoints.last_steps + track.checkpoint_every and steps < cell.budget:
                progress["wall_seconds"] = time.perf_counter() - start
                checkpoints.save(trainer, steps, progress)

        with context:
            trainer.train(cell.budget - gen_algo.num_timesteps, callback=callback, **train_kwargs)
        env_steps = gen_algo.num_timesteps
    wall = time.perf_counter() - start
    result = {
        "harness_version": HARNESS_VERSION,
        "default_changes": len(DEFAULT_CHANGES),
        **dataclasses.asdict(cell),
        "demonstrations_sha256": data.expert_stats(cell.env_id)["sha256"],
        "reference_returns": reference_returns(cell.env_id),
        "variant": variant,
        **({"settings": {name: str(value) for name, value in (diffusion_kwargs or {}).items()}}
           if cell.method == "diffusion_score" else {}),
        "learner": spec.algo if cell.method != "bc" else None,
        "learner_kwargs": dict(spec.kwargs, n_envs=spec.n_envs) if cell.method != "bc" else None,
        "n_eval_episodes": N_EVAL_EPISODES,
        "curve": curve,
        "final_return": curve[-1][1],
        "normalized_final_return": data.normalized_return(cell.env_id, curve[-1][1]),
        "wall_seconds": wall,
        "env_steps_per_second": env_steps / (wall - progress["eval_seconds"]) if env_steps else None,
        "resumed_from": steps_done if saved else None,
        "versions": versions(),
    }
    return result


class CellCheckpoints:
    """A cell's checkpoints in its own directory: ``NNNNNNN.pt`` (the trainer, with its
    learner and replay buffer) and, written after it, ``NNNNNNN.json`` (the learning
    curve and times so far), NNNNNNN the env steps taken. A pair counts once its
    ``.json`` is written; older pairs are deleted after a newer one is whole."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.last_steps = 0

    def _pairs(self) -> List[int]:
        names = (p.stem for p in self.directory.glob("*.json") if p.stem.isdigit())
        return sorted(int(stem) for stem in names if self.trainer_path({"steps": int(stem)}).exists())

    def trainer_path(self, progress: Mapping[str, Any]) -> pathlib.Path:
        return self.directory / f"{progress['steps']:07d}.pt"

    def latest(self) -> Optional[Tuple[Dict[str, Any], Dict[str, Any]]]:
        """The newest checkpoint's (state, progress), or None when there is none."""
        pairs = self._pairs()
        if not pairs:
            return None
        progress = json.loads((self.directory / f"{pairs[-1]:07d}.json").read_text())
        path = self.trainer_path(progress)
        state = th.load(path, map_location="cpu", weights_only=False)
        self.last_steps = progress["steps"]
        return state, progress

    def save(self, trainer: Any, steps: int, progress: Dict[str, Any]) -> None:
        progress = dict(progress, steps=steps)
        path = self.trainer_path(progress)
        if isinstance(trainer, DiffusionScoreIL):
            trainer.save(path)
        else:
            checkpoint.write(path, baselines.state_of(trainer), trainer.venv)
        files.atomic_write_bytes(path.with_suffix(".json"), json.dumps(progress).encode())
        for old in self._pairs()[:-1]:
            for suffix in (".json", ".pt"):
                (self.directory / f"{old:07d}{suffix}").unlink()
        self.last_steps = steps

    @staticmethod
    def restore(trainer: Any, state: Dict[str, Any]) -> None:
        """Puts a baseline's saved state back (a DiffusionScoreIL's is restored by its ``load``)."""
        if not isinstance(trainer, DiffusionScoreIL):
            baselines.restore(trainer, state)


def reference_returns(env_id: str) -> Dict[str, float]:
    """The returns that normalise a task's results: its bundled expert's and a random policy's."""
    stats = data.expert_stats(env_id)
    return {"expert": stats["expert_return_mean"], "random": stats["random_return_mean"]}


def write_result(cell: Cell, results_dir: pathlib.Path, result: Dict[str, Any]) -> None:
    """Writes a cell's result file atomically: a run killed midway leaves none."""
    files.atomic_write_bytes(cell.path(results_dir), json.dumps(result, indent=1).encode())


def run_cell(
    cell: Cell, results_dir: pathlib.Path, log_dir: pathlib.Path, diffusion_kwargs: Optional[Mapping[str, Any]] = None,
    work_dir: Optional[pathlib.Path] = None,
) -> Dict[str, Any]:
    """`train_cell` in this process, then its result file written."""
    result = train_cell(cell, log_dir, diffusion_kwargs, work_dir)
    write_result(cell, results_dir, result)
    return result


def pending_cells(
    cells: Iterable[Cell], results_dir: pathlib.Path, diffusion_kwargs: Optional[Mapping[str, Any]] = None,
) -> List[Cell]:
    """The cells with no current result file.

    :raises ValueError: where a cell's current file was made with DiffusionScoreIL
        settings other than these (running it would overwrite another variant's result)
    """
    todo = []
    for cell in cells:
        path = cell.path(results_dir)
        result = json.loads(path.read_text()) if path.exists() else None
        if not (result and is_current(result)):
            todo.append(cell)
        elif not made_with(result, diffusion_kwargs):
            raise ValueError(
                f"{path} was made with DiffusionScoreIL settings {settings_of(result)}, not these "
                f"({other_than_defaults(diffusion_kwargs or {})}): give each variant its own --results-dir, "
                "or move the file away to make it again.")
    return todo


def run_cells(
    cells: Sequence[Cell], results_dir: pathlib.Path, log_dir: pathlib.Path, workers: int, progress_bar: bool = False,
    diffusion_kwargs: Optional[Mapping[str, Any]] = None, backend: str = "process", address: Optional[str] = None,
    work_dir: Optional[pathlib.Path] = None,
) -> List[Tuple[Cell, str]]:
    """Runs cells side by side, writing each result file as it lands and printing a line for it.

    A cell that raises, or whose worker dies (Ray), is run once more; if it fails
    again it is reported and the others go on. No file is written for it.

    :param workers: process-pool workers, or the CPUs of the local Ray cluster started
        when ``address`` is None
    :param progress_bar: show a progress bar over the cells
    :param diffusion_kwargs: see ``train_cell``
    :param backend: one of ``BACKENDS``: ``"process"`` (a pool on this machine) or
        ``"ray"`` (a Ray task per cell, asking for one CPU, and one GPU where the
        cluster has them; ``pip install -e ".[ray]"``)
    :param address: the Ray cluster to join (e.g. ``"auto"``); None starts a local one
    :param work_dir: see ``train_cell``
    :return: the cells that failed, with their errors
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}: choose one of {BACKENDS}.")
    outcomes = _ray_outcomes if backend == "ray" else _process_outcomes
    failures = []
    bar = tqdm(total=len(cells), desc="cells", disable=not progress_bar)
    for cell, outcome in outcomes(cells, log_dir, workers, diffusion_kwargs, address, work_dir):
        bar.update()
        if isinstance(outcome, BaseException):
            failures.append((cell, f"{type(outcome).__name__}: {outcome}"))
            print(f"{cell.env_id:22s} {cell.method:16s} seed {cell.seed}: FAILED twice, {failures[-1][1]}", flush=True)
            continue
        write_result(cell, results_dir, outcome)
        print(
            f"{cell.env_id:22s} {cell.method:16s} seed {cell.seed}: "
            f"return {outcome['final_return']:9.1f} (normalised {outcome['normalized_final_return']:.2f}), "
            f"{outcome['wall_seconds']:.0f} s",
            flush=True,
        )
    bar.close()
    return failures


Outcomes = Iterator[Tuple[Cell, Union[Dict[str, Any], BaseException]]]


def _process_outcomes(
    cells: Sequence[Cell], log_dir: pathlib.Path, workers: int, diffusion_kwargs: Optional[Mapping[str, Any]],
    address: Optional[str], work_dir: Optional[pathlib.Path],
) -> Outcomes:
    """Each cell's result, or its error after ``CELL_RETRIES`` retries, from a process pool."""
    if address is not None:
        raise ValueError("address is for the Ray backend: pass backend='ray'.")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_cell, cell, log_dir, diffusion_kwargs, work_dir): (cell, 0) for cell in cells}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                cell, retries = futures.pop(future)
                if future.exception() is None:
                    yield cell, future.result()
                elif retries < CELL_RETRIES:
                    futures[pool.submit(train_cell, cell, log_dir, diffusion_kwargs, work_dir)] = (cell, retries + 1)
                else:
                    yield cell, future.exception()


def _ray_outcomes(
    cells: Sequence[Cell], log_dir: pathlib.Path, workers: int, diffusion_kwargs: Optional[Mapping[str, Any]],
    address: Optional[str], work_dir: Optional[pathlib.Path],
) -> Outcomes:
    """Each cell's result, or its error after ``CELL_RETRIES`` retries, from Ray tasks."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=CELL_RETRIES, retry_exceptions=True)(train_cell)
        refs = {task.remote(cell, log_dir, diffusion_kwargs, work_dir): cell for cell in cells}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                yield refs[ready[0]], ray.get(ready[0])
            except ray.exceptions.RayError as e:
                yield refs[ready[0]], e
    finally:
        if started:
            ray.shutdown()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (``python -m sb3_diffusion_il.benchmark.compare``, ``sb3-diffusion-il compare``)."""
    parser.add_argument("--track", choices=list(TRACKS), default="short",
                        help="which table: 'short' (every task at what this CPU affords, the default) or 'long' "
                             f"(the seals MuJoCo tasks at {LONG_BUDGET:,} env steps, checkpointed)")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to run (default: all of the track's)")
    by_track = ", ".join(f"{name}: {list(track.methods)}" for name, track in TRACKS.items())
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"methods to run (default: the track's; {by_track})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="seeds of each (method, task) cell (default: 0 1 2)")
    parser.add_argument("--budget", type=commands.positive_int, default=None,
                        help="override the task budgets (for smoke runs; the report leaves such results out)")
    parser.add_argument("--workers", type=commands.positive_int, default=2,
                        help="cells run side by side (with --backend ray and no --address: the local cluster's CPUs)")
    parser.add_argument("--backend", choices=BACKENDS, default="process",
                        help="a process pool on this machine (default), or a Ray task per cell")
    parser.add_argument("--address", default=None,
                        help="with --backend ray: the cluster to join (e.g. 'auto' after `ray start`); "
                             "none starts a local one")
    parser.add_argument("--results-dir", type=pathlib.Path, default=None,
                        help="where the result files go, one per cell (default: the track's; "
                             f"{', '.join(f'{n}: {t.results_dir}' for n, t in TRACKS.items())})")
    parser.add_argument("--work-dir", type=pathlib.Path, default=DEFAULT_WORK_DIR,
                        help="where a track that checkpoints (long) keeps its cells' checkpoints, to resume from")
    parser.add_argument("--log-dir", type=pathlib.Path, default=pathlib.Path("runs/compare"),
                        help="where each cell's training logs (progress.csv) go (default: runs/compare)")
    variants = parser.add_argument_group(
        "DiffusionScoreIL settings other than its defaults, to check them (give each variant its own --results-dir)")
    settings.add_flags(variants, FLAG_SETTINGS)
    variants.add_argument("--drop-state-coordinates", type=int, nargs="+", default=None, metavar="I",
                          help="DiffusionScoreIL's drop_state_coordinates (e.g. 0: seals' x position)")
    variants.add_argument("--debug-use-ground-truth", action="store_true", default=None,
                          help="DiffusionScoreIL's learner trains on the true reward: what SAC reaches in "
                               "the task's budget when the reward is not the limit")
    variants.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", dest="assignments",
                        help="any other DiffusionScoreIL argument, VALUE a Python literal (a bare word is a "
                             "string), e.g. diffusion_steps=5000 'score_opt_kwargs={\"lr\": 5e-3}'")
    commands.add_progress_bar_argument(parser)


def trainer_settings(assignments: Sequence[str]) -> Dict[str, Any]:
    """``--set``'s ``NAME=VALUE`` pairs as DiffusionScoreIL keyword arguments.

    :raises ValueError: on a pair without ``=``, or a name that is not an argument of
        DiffusionScoreIL or is one the harness passes itself
    """
    settable = set(trainer_defaults()) - set(REMOVED_SETTINGS) - set(HARNESS_ARGUMENTS)
    parsed = {}
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        if not equals:
            raise ValueError(f"--set {assignment!r}: write NAME=VALUE, e.g. diffusion_steps=5000.")
        if name not in settable:
            raise ValueError(f"--set {assignment!r}: {name!r} is not a DiffusionScoreIL argument the harness "
                             f"leaves to you; choose from {sorted(settable)}.")
        try:
            parsed[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed[name] = text
    return parsed


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Runs the cells ``args`` name that have no current result file yet."""
    diffusion_kwargs = settings.given_flags(args)
    diffusion_kwargs.update({
        name: getattr(args, name) for name in ("drop_state_coordinates", "debug_use_ground_truth")
        if getattr(args, name) is not None
    })
    track = TRACKS[args.track]
    args.tasks = args.tasks or list(track.budgets)
    args.methods = args.methods or list(track.methods)
    args.results_dir = args.results_dir or track.results_dir
    try:
        check_choices(args.methods, args.tasks, args.track)
        diffusion_kwargs.update(trainer_settings(args.assignments))
    except ValueError as e:
        parser.error(str(e))
    if args.address is not None and args.backend != "ray":
        parser.error("--address is for --backend ray")
    cells = [
        Cell(method, task, seed, args.budget or track.budgets[task], args.track)
        for seed in args.seeds for task in args.tasks for method in args.methods
    ]
    try:
        todo = pending_cells(cells, args.results_dir, diffusion_kwargs)
    except ValueError as e:
        parser.error(str(e))
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done; running {len(todo)}.", flush=True)
    failures = run_cells(
        todo, args.results_dir, args.log_dir, args.workers, args.progress_bar, diffusion_kwargs, args.backend,
        args.address, args.work_dir,
    )
    if failures:
        raise SystemExit(f"{len(failures)} of {len(todo)} cells failed twice: " + "; ".join(
            f"{cell.method} {cell.env_id} seed {cell.seed}: {error}" for cell, error in failures
        ))


def main(argv: Optional[Sequence[str]] = None) -> None:
    commands.run_standalone("python -m sb3_diffusion_il.benchmark.compare", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    main()
