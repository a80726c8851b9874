"""The sb3-diffusion-il command: train an imitator, evaluate it, make demonstrations, compare methods.

    sb3-diffusion-il train Pendulum-v1 --algo sac --timesteps 10000 --output runs/pendulum
    sb3-diffusion-il evaluate runs/pendulum
    sb3-diffusion-il make-demos Pendulum-v1 --out-dir demos
    sb3-diffusion-il compare --tasks Pendulum-v1 --seeds 0 1 2
    sb3-diffusion-il plot

Run `sb3-diffusion-il COMMAND --help` for the options of a command.
"""

import argparse
import functools
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from gymnasium import spaces
from imitation.data import types
from imitation.util import logger as imit_logger
from sb3_contrib import TQC
from stable_baselines3 import DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

import sb3_diffusion_il
from sb3_diffusion_il import commands, data, files, settings
# The benchmark suite's own commands (make-demos, compare, plot); train and evaluate use none of it.
from sb3_diffusion_il.benchmark import compare, experts, report
from sb3_diffusion_il.trainer import DiffusionScoreIL, default_round_length

PROG = "sb3-diffusion-il"
ALGOS: Dict[str, Type[BaseAlgorithm]] = {"sac": SAC, "td3": TD3, "ddpg": DDPG, "tqc": TQC, "dqn": DQN, "ppo": PPO}
# The action spaces each learner acts in (SB3 asserts them when it builds one).
ACTION_SPACES: Dict[str, Tuple[Type[spaces.Space], ...]] = {
    "sac": (spaces.Box,), "td3": (spaces.Box,), "ddpg": (spaces.Box,), "tqc": (spaces.Box,),
    "dqn": (spaces.Discrete,), "ppo": (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
}
POLICY_FILE, TRAINER_FILE, RUN_FILE = "policy.zip", "trainer.pt", "run.json"
EVAL_SEED = 10_000  # evaluation episodes never share seeds with training ones
PROGRESS_LINES = 20  # without progress bars, train prints about this many lines, one every few rounds

TRAIN_DOC = f"""Train an SB3 learner by DiffusionScoreIL from expert demonstrations.

DEMONSTRATIONS is a task with bundled demonstrations ({", ".join(data.bundled_env_ids())})
or a demonstration file written by `make-demos` (its
manifest beside it names the task; otherwise pass --env). The output folder
gets the learner (policy.zip, SB3's format), a checkpoint to resume from
(trainer.pt, for DiffusionScoreIL.load), run.json (settings and the final evaluation) and
logs/ (progress.csv; TensorBoard events with --tensorboard).

    sb3-diffusion-il train Pendulum-v1 --timesteps 10000 --output runs/pendulum
"""

EVALUATE_DOC = """Report the true return of a saved learner over a number of episodes.

POLICY is a run folder written by `train` or a learner's .zip; the task and the
algorithm are read from the run's run.json unless --task/--algo are given (the
algorithm, where it can, from the .zip itself).

    sb3-diffusion-il evaluate runs/pendulum --episodes 20
"""


@dataclass(frozen=True)
class Demonstrations:
    """Expert trajectories and the task they come from.

    :param env_id: the gymnasium task
    :param trajectories: the expert's episodes
    :param manifest: the expert's record (expert and random returns), when there is one
    """

    env_id: str
    trajectories: List[types.TrajectoryWithRew]
    manifest: Optional[Dict[str, Any]]


def resolve_demonstrations(source: str, env_id: Optional[str] = None) -> Demonstrations:
    """A bundled task's demonstrations, or a file written by `data.save_trajectories`.

    :param source: a task id with bundled demonstrations, or a path to a ``.npz`` file
    :param env_id: the task of a file without a manifest beside it (overrides the manifest's)
    :raises ValueError: with a message for the user, when the source is unusable
    """
    path = pathlib.Path(source)
    if path.is_file():
        manifest_file = path.with_suffix(".json")
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
        env_id = env_id or (manifest or {}).get("env_id")
        if env_id is None:
            raise ValueError(f"{path} has no manifest ({manifest_file.name}) naming its task: pass --env ENV_ID")
        data.check_env_id(env_id)
        trajectories = data.read_trajectories(path, manifest["sha256"] if manifest else None)
        # The manifest's returns describe its own task, not one --env names instead.
        same_task = manifest is not None and manifest.get("env_id") == env_id
        return Demonstrations(env_id, trajectories, manifest if same_task else None)
    if path.suffix == ".npz":
        raise ValueError(f"no demonstration file {path}")
    if env_id is not None:
        raise ValueError(f"--env is for a demonstration file; {source!r} names its task itself")
    data.check_env_id(source)
    return Demonstrations(source, data.load_demonstrations(source), data.expert_stats(source))


def evaluation_env(env_id: str, seed: int) -> VecEnv:
    """The task's env for evaluation episodes, seeded apart from training."""
    return make_vec_env(env_id, n_envs=1, seed=EVAL_SEED + seed)


def true_return(model: BaseAlgorithm, env: VecEnv, n_episodes: int) -> Tuple[float, float]:
    """Mean and standard deviation of the deterministic policy's true return; closes ``env``."""
    mean, std = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True)
    env.close()
    return float(mean), float(std)


def describe_return(
    env_id: str, mean: float, std: float, n_episodes: int, reference: Optional[Dict[str, Any]],
) -> str:
    """One line: the return and, when the expert's and a random policy's are known, its normalised value."""
    line = f"{env_id}: true return {mean:.1f} +- {std:.1f} over {n_episodes} episodes"
    if reference:
        expert, random = reference["expert_return_mean"], reference["random_return_mean"]
        line += f" (normalised {(mean - random) / (expert - random):.2f}; 0 random, 1 expert)"
    return line


# -- train ------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``sb3-diffusion-il train``."""
    parser.add_argument("demonstrations", metavar="DEMONSTRATIONS",
                        help="a task with bundled demonstrations, or a .npz demonstration file")
    parser.add_argument("--env", default=None, help="the task of a demonstration file without a manifest")
    parser.add_argument("--algo", choices=sorted(ALGOS), default="sac", help="the SB3 learner (default: sac)")
    parser.add_argument("--timesteps", type=commands.positive_int, default=10_000,
                        help="learner env steps (default: 10000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the learner, the trainer and the training env (default: 0)")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("runs/train"),
                        help="output folder, made if missing (default: runs/train)")
    parser.add_argument("--tensorboard", action="store_true", help="write TensorBoard events to OUTPUT/logs")
    parser.add_argument("--round-steps", type=commands.positive_int, default=None,
                        help="learner env steps per round (default: 1000 off-policy, one rollout for PPO)")
    settings.add_flags(parser)
    parser.add_argument("--eval-episodes", type=commands.non_negative_int, default=10,
                        help="true-return episodes after training (default: 10; 0: none)")
    commands.add_progress_bar_argument(parser)


def algos_for(action_space: spaces.Space) -> List[str]:
    """The ``--algo`` values whose learner acts in ``action_space``."""
    return sorted(name for name, kinds in ACTION_SPACES.items() if isinstance(action_space, kinds))


def output_problem(output: pathlib.Path) -> Optional[str]:
    """Why ``output`` cannot be made into an output folder (judged without making anything), or None."""
    if output.exists() and not output.is_dir():
        return f"--output {output} is a file: name a folder you can write to"
    existing = output
    while not existing.exists():  # ends at "." or "/" at the latest
        existing = existing.parent
    if not existing.is_dir():
        return f"--output {output} is under {existing}, which is a file: name a folder you can write to"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"--output {output}: {existing} is not writable: name a folder you can write to"
    return None


def outermost_missing(output: pathlib.Path) -> Optional[pathlib.Path]:
    """The outermost folder of ``output``'s path that does not exist yet (None: ``output`` exists)."""
    missing = None
    for folder in (output, *output.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def make_output(output: pathlib.Path) -> None:
    """Makes the output folder and checks that it takes a file.

    :raises OSError: when it cannot be made or written
    """
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=output):
        pass


def progress_printer(trainer: DiffusionScoreIL, n_rounds: int) -> Callable[[int], None]:
    """A `DiffusionScoreIL.train` callback printing a line every few rounds (about ``PROGRESS_LINES`` in all)."""
    every, start = max(1, n_rounds // PROGRESS_LINES), time.monotonic()

    def report(round_: int) -> None:
        done = round_ + 1
        if done % every == 0 or done == n_rounds:
            print(f"round {done}/{n_rounds}: {trainer.gen_algo.num_timesteps} env steps, "
                  f"{time.monotonic() - start:.0f} s", flush=True)

    return report


def run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks every argument, then makes the output folder, trains, saves the learner and the
    trainer, evaluates, and writes run.json."""
    try:
        demos = resolve_demonstrations(args.demonstrations, args.env)
    except ValueError as e:
        parser.error(str(e))
    venv = make_vec_env(demos.env_id, n_envs=1, seed=args.seed)
    fitting = algos_for(venv.action_space)
    if args.algo not in fitting:
        parser.error(
            f"--algo {args.algo} does not fit {demos.env_id}'s action space {venv.action_space}: "
            + (f"choose one of {', '.join(fitting)}" if fitting else "no --algo acts in it"),
        )
    problem = output_problem(args.output)
    if problem:
        parser.error(problem)
    try:
        settings.build(settings.given_flags(args))
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    learner = ALGOS[args.algo]("MlpPolicy", venv, seed=args.seed)  # SB3's defaults, as a user's own
    round_steps = args.round_steps or default_round_length(learner, venv.num_envs)
    if args.timesteps < round_steps:
        parser.error(
            f"--timesteps {args.timesteps} is less than one round of {round_steps} "
            "env steps: raise --timesteps or lower --round-steps",
        )
    # The arguments are accepted: only now is anything written. What fails from here on
    # (the folder, or the trainer refusing the demonstrations) takes away the folders made.
    made = outermost_missing(args.output)
    try:
        make_output(args.output)
    except OSError as e:
        if made:
            shutil.rmtree(made, ignore_errors=True)
        parser.error(f"--output {args.output}: cannot create or write the folder ({e.strerror}): "
                     "name a folder you can write to")
    log_formats = ["csv", "tensorboard"] if args.tensorboard else ["csv"]
    try:
        trainer = DiffusionScoreIL(
            demonstrations=demos.trajectories,
            venv=venv,
            gen_algo=learner,
            gen_train_timesteps=round_steps,
            custom_logger=imit_logger.configure(args.output / "logs", log_formats),
            log_dir=args.output / "logs",
            init_tensorboard=args.tensorboard,
            # Episodes that end early need it only without absorbing states.
            allow_variable_horizon=not settings.given_flags(args).get("absorbing_states", True),
            seed=args.seed,
            **settings.given_flags(args),
        )
    except (TypeError, ValueError) as e:
        if made:
            shutil.rmtree(made, ignore_errors=True)
        parser.error(str(e))
    n_rounds = args.timesteps // trainer.gen_train_timesteps
    callback = None
    if not args.progress_bar:  # a log file, not a terminal: a line every few rounds instead
        print(f"Fitting the expert score ({trainer.settings.expert_fit_steps} gradient steps), then "
              f"{n_rounds} rounds of {trainer.gen_train_timesteps} env steps", flush=True)
        callback = progress_printer(trainer, n_rounds)
    trainer.train(args.timesteps, callback=callback, progress_bar=args.progress_bar)
    learner.save(args.output / POLICY_FILE)
    trainer.save(args.output / TRAINER_FILE)
    record = {
        "env_id": demos.env_id,
        "algo": args.algo,
        "demonstrations": args.demonstrations,
        "timesteps": learner.num_timesteps,
        "seed": args.seed,
        "settings": trainer.settings.to_dict(),
        "reference_returns": demos.manifest and {
            key: demos.manifest[key] for key in ("expert_return_mean", "random_return_mean")
        },
        "command": args.command_line,
        "version": sb3_diffusion_il.__version__,
    }
    print(f"Saved the learner to {args.output / POLICY_FILE} and the trainer to {args.output / TRAINER_FILE}")
    if args.eval_episodes:
        mean, std = true_return(learner, evaluation_env(demos.env_id, args.seed), args.eval_episodes)
        record.update(eval_return_mean=mean, eval_return_std=std, eval_episodes=args.eval_episodes)
        print(describe_return(demos.env_id, mean, std, args.eval_episodes, record["reference_returns"]))
    files.atomic_write_bytes(args.output / RUN_FILE, json.dumps(record, indent=1).encode())


# -- evaluate ---------------------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``sb3-diffusion-il evaluate``."""
    parser.add_argument("policy", type=pathlib.Path, metavar="POLICY", help="a run folder or a learner's .zip")
    parser.add_argument("--task", default=None, help="the task to evaluate on (default: the run's)")
    parser.add_argument("--algo", choices=sorted(ALGOS), default=None,
                        help="the learner's algorithm (default: the run's, or the one the .zip names)")
    parser.add_argument("--episodes", type=commands.positive_int, default=10,
                        help="evaluation episodes (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default: 0)")


def saved_algos(zip_path: pathlib.Path) -> List[str]:
    """The ``--algo`` values that may have saved the learner in ``zip_path``, as its
    policy's class says (SB3 zips hold a ``data`` JSON naming it); [] when it cannot be read."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            module = json.loads(archive.read("data"))["policy_class"]["__module__"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return []
    return sorted(name for name, cls in ALGOS.items() if cls.policy_aliases["MlpPolicy"].__module__ == module)


def run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Loads the learner and prints its true return."""
    zip_path = args.policy / POLICY_FILE if args.policy.is_dir() else args.policy
    if not zip_path.is_file():
        parser.error(f"no saved learner at {zip_path}")
    run_file = zip_path.parent / RUN_FILE
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    held = saved_algos(zip_path)
    env_id = args.task or run.get("env_id")
    algo = args.algo or run.get("algo") or (held[0] if len(held) == 1 else None)
    if env_id is None or algo is None:
        missing = " and ".join(flag for flag, value in (("--task", env_id), ("--algo", algo)) if value is None)
        parser.error(f"{zip_path} has no {RUN_FILE} beside it: pass {missing}")
    if held and algo not in held:
        parser.error(f"{zip_path} holds a {' or '.join(held)} learner, not {algo}: pass "
                     + " or ".join(f"--algo {name}" for name in held))
    try:
        data.check_env_id(env_id)
    except ValueError as e:
        parser.error(str(e))
    try:
        model = ALGOS[algo].load(zip_path, device="cpu")
    except Exception as e:  # whatever a file that is not this algorithm's learner raises
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        parser.error(f"cannot load {zip_path} as a {algo} learner ({reason}): pass the --algo it was saved with")
    env = evaluation_env(env_id, args.seed)
    if (model.observation_space, model.action_space) != (env.observation_space, env.action_space):
        parser.error(
            f"the learner at {zip_path} acts in other spaces than {env_id}'s: pass the task it was trained on",
        )
    mean, std = true_return(model, env, args.episodes)
    if env_id == run.get("env_id"):
        reference = run.get("reference_returns")
    else:
        reference = data.expert_stats(env_id) if env_id in data.bundled_env_ids() else None
    print(describe_return(env_id, mean, std, args.episodes, reference))


# -- the command ------------------------------------------------------------------------

# name: (description, add_arguments, run). The last three reuse the modules' own commands.
COMMANDS: Dict[str, Tuple[str, commands.AddArguments, commands.Run]] = {
    "train": (TRAIN_DOC, add_train_arguments, run_train),
    "evaluate": (EVALUATE_DOC, add_evaluate_arguments, run_evaluate),
    "make-demos": (experts.__doc__, experts.add_arguments, experts.run),
    "compare": (compare.__doc__, compare.add_arguments, compare.run),
    "plot": (report.__doc__, report.add_arguments, report.run),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``sb3-diffusion-il`` and its subcommands; ``args.run(args)`` runs the one parsed."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {sb3_diffusion_il.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (description, add_arguments, run) in COMMANDS.items():
        description = commands.help_text(description)
        sub = subparsers.add_parser(
            name,
            help=description.strip().splitlines()[0],
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(sub)
        sub.set_defaults(run=functools.partial(run, parser=sub))
    return parser


def flags_markdown() -> str:
    """Markdown: for each subcommand, a table of its arguments and their help (``docs/cli.md``'s
    "Every flag" section holds it, between its ``flags`` markers)."""
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    sections = []
    for name, sub in subparsers.choices.items():
        formatter = sub._get_formatter()
        rows = [f"### `{PROG} {name}`", "", "| flag | what it does |", "|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            invocation = formatter._format_action_invocation(action)
            help_text = " ".join(formatter._expand_help(action).split()).replace("|", "\\|")
            rows.append(f"| `{invocation}` | {help_text} |")
        sections.append("\n".join(rows))
    return "\n\n".join(sections)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``sb3-diffusion-il`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = commands.command_line(PROG, argv)
    args.run(args)


if __name__ == "__main__":
    main()
