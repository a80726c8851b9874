"""The ``sb3-diffusion-il`` command: each subcommand end to end on a tiny budget, and its errors.

End-to-end runs go through a subprocess, as a user's shell would; argument
errors run in-process (they stop before any work) and must end in exit status
2 with one error line, never a traceback.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
from importlib import metadata

import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from sb3_diffusion_il import DiffusionScoreIL, cli, load_demonstrations
from sb3_diffusion_il.benchmark import tasks

# A round of 200 env steps and a 20-step expert fit: seconds, not minutes.
TINY_TRAIN = ["--timesteps", "200", "--round-steps", "200", "--expert-fit-steps", "20", "--eval-episodes", "1"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Runs ``sb3-diffusion-il ARGS`` (through the module, whatever the PATH), failing on a non-zero exit.

    Its stderr is a pipe, not a terminal, so no progress bars are drawn.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "sb3_diffusion_il.cli", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_console_script_is_registered():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("sb3-diffusion-il") == "sb3_diffusion_il.cli:main"


@pytest.mark.parametrize("command", [[], *([name] for name in cli.COMMANDS)])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(['sb3-diffusion-il', *command])}")
    if not command:
        assert all(name in out for name in cli.COMMANDS)


def test_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "Pendulum-v1", *TINY_TRAIN, "--output", str(out), "--tensorboard")
    assert "Pendulum-v1: true return" in result.stdout and "normalised" in result.stdout
    run = json.loads((out / "run.json").read_text())
    assert run["env_id"] == "Pendulum-v1" and run["algo"] == "sac" and run["timesteps"] == 200
    assert run["command"].startswith("sb3-diffusion-il train Pendulum-v1")
    assert (out / "logs" / "progress.csv").stat().st_size > 0
    assert list((out / "logs").glob("events.out.tfevents.*")), "no TensorBoard events"

    # What train saved loads as the docs say.
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    learner = SAC.load(out / "policy.zip", env=venv)
    trainer = DiffusionScoreIL.load(
        out / "trainer.pt", demonstrations=load_demonstrations("Pendulum-v1"), venv=venv, gen_algo=learner,
    )
    assert trainer.expert_score_net.is_fitted

    result = run_cli("evaluate", str(out), "--episodes", "2")
    assert result.stdout.startswith("Pendulum-v1: true return") and "over 2 episodes" in result.stdout


def test_make_demos_then_train_from_the_file(tmp_path):
    demos = tmp_path / "demos"
    run_cli(
        "make-demos", "Pendulum-v1", "--timesteps", "200", "--eval-every", "200", "--episodes", "2",
        "--out-dir", str(demos), "--work-dir", str(tmp_path / "work"),
    )
    manifest = json.loads((demos / "Pendulum-v1.json").read_text())
    assert manifest["n_episodes"] == 2 and manifest["expert_timesteps"] == 200
    assert manifest["command"].startswith("sb3-diffusion-il make-demos Pendulum-v1")

    out = tmp_path / "run"
    result = run_cli("train", str(demos / "Pendulum-v1.npz"), "--algo", "td3", *TINY_TRAIN, "--output", str(out))
    assert "Pendulum-v1: true return" in result.stdout
    assert json.loads((out / "run.json").read_text())["algo"] == "td3"


def test_compare_then_plot(tmp_path):
    results = tmp_path / "results"
    run_cli(
        "compare", "--tasks", "Pendulum-v1", "--methods", "bc", "--seeds", "0", "--workers", "1",
        "--results-dir", str(results), "--log-dir", str(tmp_path / "logs"),
    )
    assert (results / "Pendulum-v1" / f"bc-seed0-budget{cli.compare.BUDGETS['Pendulum-v1']}.json").is_file()
    again = run_cli("compare", "--tasks", "Pendulum-v1", "--methods", "bc", "--seeds", "0", "--workers", "1",
                    "--results-dir", str(results), "--log-dir", str(tmp_path / "logs"))
    assert "1 of 1 cells already done; running 0." in again.stdout

    docs = tmp_path / "docs"
    run_cli("plot", "--results-dir", str(results), "--out-dir", str(docs), "--readme", "")
    assert "| Pendulum-v1 | 10,000 | 1 |" in (docs / "results.md").read_text()
    assert (docs / "img" / "learning_curves.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "Foo-v0"], "unknown task 'Foo-v0'"),
        (["train", "Pendulum-v1", "--algo", "a2c"], "invalid choice: 'a2c'"),
        (["train", "missing.npz"], "no demonstration file missing.npz"),
        (["train", "Pendulum-v1", "--timesteps", "0"], "argument --timesteps: 0 is not positive"),
        (["train", "Pendulum-v1", "--timesteps", "many"], "argument --timesteps: 'many' is not an integer"),
        (["train", "Pendulum-v1", "--timesteps", "500"], "less than one round of 1000 env steps"),
        (["train", "Pendulum-v1", "--env", "Pendulum-v1"], "--env is for a demonstration file"),
        (["evaluate", "missing-run"], "no saved learner at missing-run"),
        (["evaluate", "policy.zip", "--episodes", "-3"], "argument --episodes: -3 is not positive"),
        (["make-demos", "Foo-v0"], "unknown task 'Foo-v0'"),
        (["make-demos", "Pendulum-v1", "--timesteps", "-1"], "argument --timesteps: -1 is not positive"),
        (["compare", "--methods", "dac"], "Unknown method 'dac'"),
        (["compare", "--workers", "0"], "argument --workers: 0 is not positive"),
        (["compare", "--reward-std", "-1"], "argument --reward-std: reward_std=-1.0 must be positive"),
        (["train", "Pendulum-v1", "--cost-timesteps", "0"], "argument --cost-timesteps: cost_timesteps=0 must be"),
        (["plot", "--readme", "missing.md"], "no README at missing.md"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_error_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("sb3-diffusion-il") and message in errors[0], errors


def test_bad_argument_in_a_shell_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sb3_diffusion_il.cli", "train", "Foo-v0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "sb3-diffusion-il train: error: unknown task 'Foo-v0': Environment `Foo` doesn't exist."
    )


def last_error(argv, capsys) -> str:
    """Runs ``sb3-diffusion-il ARGV``, asserting it stops with exit status 2; stderr's last line."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_an_algorithm_for_other_actions_is_refused_before_anything_is_built(tmp_path, capsys):
    line = last_error(["train", "Pendulum-v1", "--algo", "dqn", "--output", str(tmp_path / "run")], capsys)
    assert line.startswith("sb3-diffusion-il train: error: --algo dqn does not fit Pendulum-v1's action space")
    assert line.endswith("choose one of ddpg, ppo, sac, td3, tqc")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "output, message",
    [
        ("/proc/x", "--output /proc/x: cannot create or write the folder"),
        ("file.txt/run", "--output file.txt/run is under file.txt, which is a file"),
        ("file.txt", "--output file.txt is a file"),
    ],
)
def test_an_unusable_output_folder_is_refused_before_training(output, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    pathlib.Path("file.txt").write_text("a file")
    line = last_error(["train", "Pendulum-v1", "--expert-fit-steps", "20", "--output", output], capsys)
    assert message in line and line.endswith("name a folder you can write to"), line
    assert pathlib.Path("file.txt").read_text() == "a file"


def test_a_rejected_train_creates_nothing(tmp_path, capsys):
    line = last_error(["train", "Pendulum-v1", "--timesteps", "500", "--output", str(tmp_path / "run")], capsys)
    assert line.endswith("raise --timesteps or lower --round-steps")
    assert not (tmp_path / "run").exists()


def test_evaluate_names_the_algorithm_a_zip_holds(tmp_path, capsys):
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, device="cpu").save(tmp_path / "sac.zip")
    line = last_error(["evaluate", str(tmp_path / "sac.zip"), "--task", "Pendulum-v1", "--algo", "ppo"], capsys)
    assert line.endswith(f"{tmp_path / 'sac.zip'} holds a sac learner, not ppo: pass --algo sac")


def test_evaluate_of_an_unreadable_zip_asks_for_the_right_algorithm(tmp_path, capsys):
    (tmp_path / "odd.zip").write_bytes(b"not a zip")
    line = last_error(["evaluate", str(tmp_path / "odd.zip"), "--task", "Pendulum-v1", "--algo", "sac"], capsys)
    assert "cannot load" in line and line.endswith("pass the --algo it was saved with")


def test_a_task_outside_the_registry_gets_a_learner_for_its_actions():
    assert tasks.get_task("CartPole-v1").expert_algo == "PPO"  # Discrete
    assert tasks.get_task("MountainCarContinuous-v0").expert_algo == "SAC"  # Box


def test_train_prints_a_line_per_round_without_progress_bars(tmp_path, capsys):
    cli.main([
        "train", "Pendulum-v1", "--timesteps", "400", "--round-steps", "200", "--expert-fit-steps", "20",
        "--eval-episodes", "0", "--no-progress-bar", "--output", str(tmp_path / "run"),
    ])
    out = capsys.readouterr().out
    assert "round 1/2: 200 env steps" in out and "round 2/2: 400 env steps" in out, out


def test_plot_without_results_says_what_to_run(tmp_path, capsys):
    line = last_error(["plot", "--results-dir", str(tmp_path / "none"), "--readme", ""], capsys)
    assert line.startswith(f"sb3-diffusion-il plot: error: no current result files in {tmp_path / 'none'}")
    assert line.endswith("run `sb3-diffusion-il compare --track short` first")


def subcommand_parsers():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices.items()


@pytest.mark.parametrize("name, parser", subcommand_parsers())
def test_every_flag_has_help_without_rst(name, parser):
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert not undocumented, f"{name}: {undocumented} have no help text"
    assert "``" not in parser.format_help(), f"`{name} --help` shows RST double backticks"


def test_the_docs_list_every_flag():
    text = (pathlib.Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    listed = text.split("<!-- flags:start -->\n", 1)[1].split("\n<!-- flags:end -->", 1)[0]
    assert listed == cli.flags_markdown(), (
        "docs/cli.md's list of flags is not the parser's: rewrite it with cli.flags_markdown()"
    )
