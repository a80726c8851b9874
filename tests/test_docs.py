"""The documentation: the site builds with warnings as errors, and the code in it and the README works.

- ``mkdocs build --strict`` succeeds (broken links, anchors and docstrings fail it).
- Every ```python block runs. A page's blocks run in order in one namespace
  (like a notebook), in a temporary working directory. The pages show real
  budgets (``trainer.train(8000)``); the test shrinks them at run time instead
  of editing the code (`small_budgets`): an SB3 ``learn`` call takes at most
  ``SMALL_LEARN_STEPS`` env steps, a trainer's ``train`` runs one round, and
  ``DiffusionScoreIL`` fits its expert score for ``SMALL_EXPERT_FIT_STEPS`` steps.
- ```bash blocks are not run (they install packages or train for minutes), but
  every command in them must exist: ``sb3-diffusion-il`` and ``python -m``
  commands must parse their arguments, scripts and ``pip install -e`` extras
  must exist, other programs must be on the PATH.
- Repository paths the pages mention (``examples/...``, ``docs/img/...``) exist.
"""

import argparse
import configparser
import importlib
import importlib.util
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, NamedTuple

import pytest
from imitation.algorithms.adversarial.common import AdversarialTrainer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_diffusion_il import DiffusionScoreIL, cli

ROOT = pathlib.Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SMALL_LEARN_STEPS = 200
SMALL_EXPERT_FIT_STEPS = 50
MAX_IMAGE_BYTES = 300_000
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
# Paths inside the repository, as pages name them in prose and links.
REPO_PATH = re.compile(r"\b(?:examples|sb3_diffusion_il|docs|tests|benchmarks)/[\w./*-]*[\w*]")


class Block(NamedTuple):
    page: pathlib.Path
    line: int
    lang: str
    code: str


def blocks(page: pathlib.Path) -> List[Block]:
    """The fenced code blocks of a page, dedented (blocks inside tabs are indented)."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        indent = len(match["indent"])
        code = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
        found.append(Block(page, text.count("\n", 0, match.start()) + 1, match["lang"], code))
    return found


def pages_with(lang: str) -> List[pathlib.Path]:
    return [page for page in PAGES if any(b.lang == lang for b in blocks(page))]


def page_id(page: pathlib.Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture
def small_budgets(monkeypatch):
    """Shrinks every budget the docs' code asks for; see the module docstring."""
    for algo_cls in (OffPolicyAlgorithm, OnPolicyAlgorithm):
        def capped_learn(self, total_timesteps, *args, _learn=algo_cls.learn, **kwargs):
            return _learn(self, min(total_timesteps, SMALL_LEARN_STEPS), *args, **kwargs)

        monkeypatch.setattr(algo_cls, "learn", capped_learn)
    for trainer_cls in (DiffusionScoreIL, AdversarialTrainer):
        def one_round(self, total_timesteps, *args, _train=trainer_cls.train, **kwargs):
            return _train(self, self.gen_train_timesteps, *args, **kwargs)

        monkeypatch.setattr(trainer_cls, "train", one_round)
    init = DiffusionScoreIL.__init__

    def small_expert_fit(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "expert_fit_steps": SMALL_EXPERT_FIT_STEPS})

    monkeypatch.setattr(DiffusionScoreIL, "__init__", small_expert_fit)


def test_site_builds_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's notice about MkDocs 2.0
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("DiffusionScoreIL") > 10


@pytest.mark.parametrize("page", pages_with("python"), ids=page_id)
def test_python_blocks_run(page, small_budgets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: Dict[str, object] = {"__name__": "__docs__"}
    for block in blocks(page):
        if block.lang == "python":
            exec(compile(block.code, f"{page_id(page)}:{block.line}", "exec"), namespace)


def commands(code: str) -> List[List[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, split at ``&&``."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        for command in line.split("&&"):
            words = shlex.split(command, comments=True)
            if words:
                found.append(words)
    return found


def parse_or_fail(parser: argparse.ArgumentParser, argv: List[str], command: str) -> None:
    try:
        parser.parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"`{command}` does not parse"


def check_command(words: List[str]) -> None:
    """Asserts that the command exists and, where it is this package's, that its arguments parse."""
    command = shlex.join(words)
    if words[0] == "sb3-diffusion-il":
        parse_or_fail(cli.build_parser(), words[1:], command)
    elif words[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(words[2]), f"`{command}`: no module {words[2]}"
        module = importlib.import_module(words[2]) if words[2].startswith("sb3_diffusion_il.") else None
        if hasattr(module, "add_arguments"):  # this package's commands (see sb3_diffusion_il.commands)
            parser = argparse.ArgumentParser()
            module.add_arguments(parser)
            parse_or_fail(parser, words[3:], command)
    elif words[0] == "python":
        assert (ROOT / words[1]).is_file(), f"`{command}`: no script {words[1]}"
    elif words[:2] == ["pip", "install"]:
        config = configparser.ConfigParser()
        config.read(ROOT / "setup.cfg")
        extras = set(config["options.extras_require"])
        for word in words:
            if word.startswith(".["):
                assert set(word[2:-1].split(",")) <= extras, f"`{command}`: unknown extra in {word}"
    else:
        assert shutil.which(words[0]), f"`{command}`: {words[0]} is not installed"


@pytest.mark.parametrize("page", pages_with("bash"), ids=page_id)
def test_shell_commands_exist(page):
    for block in blocks(page):
        if block.lang == "bash":
            for words in commands(block.code):
                check_command(words)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_mentioned_paths_exist(page):
    missing = [path for path in set(REPO_PATH.findall(page.read_text())) if not list(ROOT.glob(path))]
    assert not missing, f"{page_id(page)} names paths that do not exist: {missing}"


def test_images_are_small():
    for image in (ROOT / "docs" / "img").glob("*.png"):
        assert image.stat().st_size < MAX_IMAGE_BYTES, f"{image} is larger than {MAX_IMAGE_BYTES} bytes"


def test_settings_table_is_generated_from_the_settings():
    from sb3_diffusion_il import settings

    text = (ROOT / "docs" / "settings.md").read_text()
    table = text.split("<!-- settings:start -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert table == settings.markdown_table()
