"""The comparison harness: DiffusionScoreIL against imitation's GAIL, AIRL and BC.

One *cell* is (method, task, seed, env-step budget); running it writes one JSON
result file with the learning curve of true returns (10 evaluation episodes
every tenth of the budget), wall-clock time and env steps per second. Cells
already done are skipped, so results accumulate across sessions::

    python -m sb3_diffusion_il.benchmark.compare --tasks Pendulum-v1 --seeds 0 1 2 --workers 2

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

from sb3_diffusion_il import commands, data
from sb3_diffusion_il.benchmark import baselines
from sb3_diffusion_il.benchmark.experts import versions
from sb3_diffusion_il.benchmark.tasks import get_task
from sb3_diffusion_il.trainer import REWARD_NORMALIZATIONS, DiffusionScoreIL

# Bump when a change makes earlier result files incomparable; the report
# ignores files of another version. 2: the importance-sampled, cached cost
# estimate, and GAIL/AIRL relabelling with the reward net in eval mode. 3: the
# learner's reward scale chosen from the learner (reward_std="auto", rewards
# standardised once a round), SB3's default SAC on Pendulum-v1, and
# seals/CartPole-v0 with imitation's tutorial PPO (versions 1 and 2's files
# are kept in benchmarks/results/harness-v1 and harness-v2).
HARNESS_VERSION = 3
# DiffusionScoreIL defaults changed within this harness version, in order, each
# (name, earlier default). A cell records how many had been made
# ("default_changes"), so one made before a change keeps its setting by name
# (`settings_of`) instead of every method's cells being re-run for it.
DEFAULT_CHANGES: Tuple[Tuple[str, str], ...] = (("learner_refit", "warm"),)
METHODS = ("diffusion_score", "gail", "airl", "bc")
# Env-step budget per task, the same for every method (what this CPU affords).
BUDGETS: Dict[str, int] = {
    "seals/CartPole-v0": 200_000,
    "Pendulum-v1": 10_000,
    "InvertedPendulum-v4": 10_000,
    "seals/HalfCheetah-v1": 50_000,
    "seals/Hopper-v1": 50_000,
    "seals/Walker2d-v1": 50_000,
}
LEARNER_ALGOS = {"SAC": SAC, "PPO": PPO}


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
# Rounds of off-policy learners (imitation's trainers have no default for them);
# on-policy ones take one rollout, both trainers' default.
ROUND_STEPS = 1_000
# DiffusionScoreIL settings the command line can set to other than their defaults
# (each a flag of the same name), for checks in their own results directories.
CHECKABLE_SETTINGS = (
    "conditioning", "drop_state_coordinates", "relabel_refresh", "reward_saturation", "reward_std",
    "reward_normalization",
    "debug_use_ground_truth",
)
# A flag's value that stands for a setting of None (argparse's None means "not given").
NONE = "none"
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
N_EVAL_POINTS = 10
N_EVAL_EPISODES = 10
EVAL_SEED = 100_000
ADVERSARIAL_DEFAULTS = dict(demo_batch_size=512)
BC_EPOCHS = 100
DEFAULT_RESULTS_DIR = pathlib.Path("benchmarks/results")
# Every file `Cell.path` names under a results directory, and no other tool's files there.
CELL_FILES = "*/*-seed*-budget*.json"


@dataclasses.dataclass(frozen=True)
class Cell:
    method: str
    env_id: str
    seed: int
    budget: int

    def path(self, results_dir: pathlib.Path) -> pathlib.Path:
        return results_dir / data.demo_path(self.env_id).stem / f"{self.method}-seed{self.seed}-budget{self.budget}.json"


def check_choices(methods: Iterable[str], tasks: Iterable[str]) -> None:
    """Raises on a method or task the harness does not know, listing the valid ones."""
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}: choose from {list(METHODS)}.")
    for task in tasks:
        if task not in BUDGETS:
            raise ValueError(f"Unknown task {task!r}: choose from {list(BUDGETS)}.")


def learner(env_id: str) -> Learner:
    return LEARNERS.get(env_id, MUJOCO_LEARNER)


def is_current(result: Dict[str, Any], version: int = HARNESS_VERSION) -> bool:
    """Whether a result file belongs in the table of harness ``version`` (default: today's):
    at the task's budget and made with its bundled demonstrations."""
    return (
        result.get("harness_version") == version
        and result.get("budget") == BUDGETS.get(result.get("env_id"))
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


def other_than_defaults(settings: Mapping[str, Any]) -> Dict[str, str]:
    """``settings`` (DiffusionScoreIL arguments) that differ from today's defaults, values as text."""
    parameters = inspect.signature(DiffusionScoreIL).parameters
    return {name: str(value) for name, value in settings.items() if str(value) != str(parameters[name].default)}


def settings_of(result: Dict[str, Any]) -> Dict[str, str]:
    """The DiffusionScoreIL settings a cell was made with that differ from today's defaults
    (none for the other methods), by name: those the harness was told, and the earlier
    value of each default that changed since (``DEFAULT_CHANGES``)."""
    if result["method"] != "diffusion_score":
        return {}
    told = dict(setting.split("=", 1) for setting in SETTING.split(result["variant"])[1:])
    for name, earlier in DEFAULT_CHANGES[result.get("default_changes", 0):]:
        told.setdefault(name, earlier)
    return dict(sorted(other_than_defaults(told).items()))


def made_with(result: Dict[str, Any], diffusion_kwargs: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether a cell was made with these DiffusionScoreIL settings (default: today's defaults)."""
    return result["method"] != "diffusion_score" or settings_of(result) == other_than_defaults(diffusion_kwargs or {})


def train_cell(
    cell: Cell, log_dir: pathlib.Path, diffusion_kwargs: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Trains one method on one task and seed; returns the cell's result (what its file holds).

    Both backends run this in their workers; the driver writes the files.

    :param log_dir: where the run's progress logs go (on the worker's machine)
    :param diffusion_kwargs: DiffusionScoreIL settings other than its defaults, to check
        them (the variant names each)
    """
    th.set_num_threads(1)  # cells run side by side, one per core
    # BC's policy and the adversarial reward nets draw from the process-wide RNGs.
    set_random_seed(cell.seed)
    task = get_task(cell.env_id)
    spec = learner(cell.env_id)
    venv = make_vec_env(cell.env_id, n_envs=spec.n_envs, seed=cell.seed)
    eval_env = make_vec_env(cell.env_id, n_envs=1, seed=EVAL_SEED + cell.seed)
    demonstrations = data.load_demonstrations(cell.env_id)
    logger = imit_logger.configure(log_dir / cell.path(pathlib.Path()).with_suffix(""), ["csv"])
    curve: List[List[float]] = []
    eval_seconds = 0.0

    def evaluate(policy, steps: int) -> None:
        nonlocal eval_seconds
        start = time.perf_counter()
        mean, std = evaluate_policy(policy, eval_env, n_eval_episodes=N_EVAL_EPISODES, deterministic=True)
        curve.append([steps, float(mean), float(std)])
        eval_seconds += time.perf_counter() - start

    start = time.perf_counter()
    if cell.method == "bc":
        trainer = baselines.make_bc(venv, demonstrations, cell.seed, custom_logger=logger)
        trainer.train(n_epochs=BC_EPOCHS, progress_bar=False)
        evaluate(trainer.policy, 0)
        variant, env_steps = f"bc, {BC_EPOCHS} epochs", 0
    else:
        gen_algo = spec.build(venv, cell.seed)
        off_policy = isinstance(gen_algo, OffPolicyAlgorithm)
        common = dict(
            demonstrations=demonstrations, venv=venv, gen_algo=gen_algo,
            gen_train_timesteps=ROUND_STEPS if off_policy else None,
            allow_variable_horizon=not task.fixed_horizon, custom_logger=logger, log_dir=log_dir,
        )
        if cell.method == "diffusion_score":
            trainer = DiffusionScoreIL(**common, **(diffusion_kwargs or {}), seed=cell.seed)
            context: Any = contextlib.nullcontext(True)
            arithmetic = "bfloat16" if trainer.reward_train.bfloat16 else "float32"
            delivery = "relabelled replay" if off_policy else "reward-wrapped env"
            variant = f"diffusion_score + {spec.algo}, {delivery}, {arithmetic} cost"
            variant += "".join(f", {name}={value}" for name, value in (diffusion_kwargs or {}).items())
            train_kwargs = {"progress_bar": False}
        else:
            adversarial = ADVERSARIAL_KWARGS.get(cell.env_id, ADVERSARIAL_DEFAULTS)
            trainer = baselines.make_adversarial(cell.method, **adversarial, **common)
            context = baselines.relabeled(trainer)
            variant = f"{cell.method} (state-only reward) + {spec.algo}"
            variant += ", relabelled replay" if off_policy else ""
            train_kwargs = {}  # imitation's trainers always show their progress bar
        evaluate(gen_algo.policy, 0)
        eval_every = cell.budget // N_EVAL_POINTS

        def callback(round_: int) -> None:
            if gen_algo.num_timesteps >= len(curve) * eval_every:
                evaluate(gen_algo.policy, gen_algo.num_timesteps)

        with context:
            trainer.train(cell.budget, callback=callback, **train_kwargs)
        env_steps = gen_algo.num_timesteps
    wall = time.perf_counter() - start
    result = {
        "harness_version": HARNESS_VERSION,
        "default_changes": len(DEFAULT_CHANGES),
        **dataclasses.asdict(cell),
        "demonstrations_sha256": data.expert_stats(cell.env_id)["sha256"],
        "reference_returns": reference_returns(cell.env_id),
        "variant": variant,
        "learner": spec.algo if cell.method != "bc" else None,
        "learner_kwargs": dict(spec.kwargs, n_envs=spec.n_envs) if cell.method != "bc" else None,
        "n_eval_episodes": N_EVAL_EPISODES,
        "curve": curve,
        "final_return": curve[-1][1],
        "normalized_final_return": data.normalized_return(cell.env_id, curve[-1][1]),
        "wall_seconds": wall,
        "env_steps_per_second": env_steps / (wall - eval_seconds) if env_steps else None,
        "versions": versions(),
    }
    return result


def reference_returns(env_id: str) -> Dict[str, float]:
    """The returns that normalise a task's results: its bundled expert's and a random policy's."""
    stats = data.expert_stats(env_id)
    return {"expert": stats["expert_return_mean"], "random": stats["random_return_mean"]}


def write_result(cell: Cell, results_dir: pathlib.Path, result: Dict[str, Any]) -> None:
    """Writes a cell's result file atomically: a run killed midway leaves none."""
    data.atomic_write_bytes(cell.path(results_dir), json.dumps(result, indent=1).encode())


def run_cell(
    cell: Cell, results_dir: pathlib.Path, log_dir: pathlib.Path, diffusion_kwargs: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """`train_cell` in this process, then its result file written."""
    result = train_cell(cell, log_dir, diffusion_kwargs)
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
    :return: the cells that failed, with their errors
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}: choose one of {BACKENDS}.")
    outcomes = _ray_outcomes if backend == "ray" else _process_outcomes
    failures = []
    bar = tqdm(total=len(cells), desc="cells", disable=not progress_bar)
    for cell, outcome in outcomes(cells, log_dir, workers, diffusion_kwargs, address):
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
    address: Optional[str],
) -> Outcomes:
    """Each cell's result, or its error after ``CELL_RETRIES`` retries, from a process pool."""
    if address is not None:
        raise ValueError("address is for the Ray backend: pass backend='ray'.")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_cell, cell, log_dir, diffusion_kwargs): (cell, 0) for cell in cells}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                cell, retries = futures.pop(future)
                if future.exception() is None:
                    yield cell, future.result()
                elif retries < CELL_RETRIES:
                    futures[pool.submit(train_cell, cell, log_dir, diffusion_kwargs)] = (cell, retries + 1)
                else:
                    yield cell, future.exception()


def _ray_outcomes(
    cells: Sequence[Cell], log_dir: pathlib.Path, workers: int, diffusion_kwargs: Optional[Mapping[str, Any]],
    address: Optional[str],
) -> Outcomes:
    """Each cell's result, or its error after ``CELL_RETRIES`` retries, from Ray tasks."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=CELL_RETRIES, retry_exceptions=True)(train_cell)
        refs = {task.remote(cell, log_dir, diffusion_kwargs): cell for cell in cells}
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
    parser.add_argument("--tasks", nargs="+", default=list(BUDGETS), help=f"default: all of {list(BUDGETS)}")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"default: all of {list(METHODS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=commands.positive_int, default=None,
                        help="override the task budgets (for smoke runs; the report leaves such results out)")
    parser.add_argument("--workers", type=commands.positive_int, default=2,
                        help="cells run side by side (with --backend ray and no --address: the local cluster's CPUs)")
    parser.add_argument("--backend", choices=BACKENDS, default="process",
                        help="a process pool on this machine (default), or a Ray task per cell")
    parser.add_argument("--address", default=None,
                        help="with --backend ray: the cluster to join (e.g. 'auto' after `ray start`); "
                             "none starts a local one")
    parser.add_argument("--results-dir", type=pathlib.Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--log-dir", type=pathlib.Path, default=pathlib.Path("runs/compare"))
    parser.add_argument("--conditioning", choices=data.CONDITIONINGS, default=None,
                        help="what DiffusionScoreIL diffuses, to check a setting other than the default "
                             "'state' (another --results-dir)")
    parser.add_argument("--relabel-refresh", type=commands.positive_int, default=None,
                        help="DiffusionScoreIL's relabel_refresh, to check a setting other than the "
                             "default (another --results-dir)")
    parser.add_argument("--drop-state-coordinates", type=int, nargs="+", default=None, metavar="I",
                        help="DiffusionScoreIL's drop_state_coordinates (e.g. 0: seals' x position), to check "
                             "a setting other than the default (another --results-dir)")
    parser.add_argument("--reward-saturation", type=lambda text: commands.quantile_or_none(text) or NONE,
                        default=None,
                        help="DiffusionScoreIL's reward_saturation, a quantile, or 'none' for the plain -c, "
                             "to check a setting other than the default (another --results-dir)")
    parser.add_argument("--reward-std", type=commands.positive_float, default=None,
                        help="DiffusionScoreIL's reward_std (the other methods' rewards are not "
                             "standardised), to check a setting other than the default (another --results-dir)")
    parser.add_argument("--reward-normalization", choices=REWARD_NORMALIZATIONS, default=None,
                        help="DiffusionScoreIL's reward_normalization, to check a setting other than the "
                             "default (another --results-dir)")
    parser.add_argument("--debug-use-ground-truth", action="store_true", default=None,
                        help="DiffusionScoreIL's learner trains on the true reward: what SAC reaches in "
                             "the task's budget when the reward is not the limit (another --results-dir)")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", dest="settings",
                        help="any other DiffusionScoreIL argument, VALUE a Python literal (a bare word is a "
                             "string), e.g. diffusion_steps=5000 'score_opt_kwargs={\"lr\": 5e-3}' "
                             "(another --results-dir)")
    commands.add_progress_bar_argument(parser)


def trainer_settings(assignments: Sequence[str]) -> Dict[str, Any]:
    """``--set``'s ``NAME=VALUE`` pairs as DiffusionScoreIL keyword arguments.

    :raises ValueError: on a pair without ``=``, or a name that is not an argument of
        DiffusionScoreIL or is one the harness passes itself
    """
    settable = set(inspect.signature(DiffusionScoreIL).parameters) - set(HARNESS_ARGUMENTS)
    settings = {}
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        if not equals:
            raise ValueError(f"--set {assignment!r}: write NAME=VALUE, e.g. diffusion_steps=5000.")
        if name not in settable:
            raise ValueError(f"--set {assignment!r}: {name!r} is not a DiffusionScoreIL argument the harness "
                             f"leaves to you; choose from {sorted(settable)}.")
        try:
            settings[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            settings[name] = text
    return settings


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Runs the cells ``args`` name that have no current result file yet."""
    diffusion_kwargs = {
        name: None if getattr(args, name) == NONE else getattr(args, name)
        for name in CHECKABLE_SETTINGS if getattr(args, name) is not None
    }
    try:
        check_choices(args.methods, args.tasks)
        diffusion_kwargs.update(trainer_settings(args.settings))
    except ValueError as e:
        parser.error(str(e))
    if args.address is not None and args.backend != "ray":
        parser.error("--address is for --backend ray")
    cells = [
        Cell(method, task, seed, args.budget or BUDGETS[task])
        for seed in args.seeds for task in args.tasks for method in args.methods
    ]
    try:
        todo = pending_cells(cells, args.results_dir, diffusion_kwargs)
    except ValueError as e:
        parser.error(str(e))
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done; running {len(todo)}.", flush=True)
    failures = run_cells(
        todo, args.results_dir, args.log_dir, args.workers, args.progress_bar, diffusion_kwargs, args.backend,
        args.address,
    )
    if failures:
        raise SystemExit(f"{len(failures)} of {len(todo)} cells failed twice: " + "; ".join(
            f"{cell.method} {cell.env_id} seed {cell.seed}: {error}" for cell, error in failures
        ))


def main(argv: Optional[Sequence[str]] = None) -> None:
    commands.run_standalone("python -m sb3_diffusion_il.benchmark.compare", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    main()
