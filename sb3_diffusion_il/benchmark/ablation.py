"""DiffusionScoreIL's variants side by side: one results directory per variant, a row each.

    python -m sb3_diffusion_il.benchmark.ablation --tasks seals/HalfCheetah-v1 seals/Hopper-v1 \
        --variant "today's defaults" benchmarks/results \
        --variant "raw features" benchmarks/results/raw-features-check \
        --reference gail --doc docs/benchmarks.md

Each ``--variant LABEL DIR`` is DiffusionScoreIL's cells in ``DIR`` (made with
``compare ... --results-dir DIR``); the settings that make it a variant are read
from its files, and the table gives, per task, the IQM of the normalised return
over its seeds with the 95% bootstrap interval at all and at half of the budget,
as the report does. ``--reference METHOD`` adds that method's row from the first
variant's directory. The commands that made each row's cells follow the table.
With ``--doc`` the markdown replaces the text between the file's ``ablation``
markers; it is always printed.
"""

import argparse
import pathlib
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from sb3_diffusion_il import commands
from sb3_diffusion_il.benchmark import compare, report

METHOD = "diffusion_score"
# The report's budget fractions, the whole budget first: a task's columns.
FRACTIONS = sorted(report.FRACTIONS["short"], reverse=True)


def settings_of(result: dict) -> Tuple[str, ...]:
    """The ``NAME=VALUE`` settings a cell was made with, other than the defaults."""
    return tuple(f"{name}={value}" for name, value in compare.settings_of(result).items())


def variant_settings(results: report.Results, tasks: Sequence[str], directory: pathlib.Path) -> Tuple[str, ...]:
    """The one set of settings of a variant's cells on ``tasks``.

    :raises ValueError: when its cells were made with different settings (two variants in one directory)
    """
    found = {settings_of(r) for e in tasks for r in results[e][METHOD].values()}
    if len(found) > 1:
        raise ValueError(f"{directory} holds DiffusionScoreIL cells of {len(found)} variants ({sorted(found)}): "
                         "give each variant its own --results-dir.")
    return found.pop() if found else ()


def cells(results: report.Results, env_id: str, method: str) -> str:
    """IQM [CI] at each budget fraction, the whole budget first, and the seeds they are over."""
    if not results[env_id].get(method):
        return " | ".join("–" for _ in FRACTIONS)
    stats = []
    for fraction in FRACTIONS:
        matrix = report.score_matrix(results, [env_id], method, fraction)
        point, low, high = report.iqm_with_ci({method: matrix})[method]
        stats.append(f"{point:.2f} [{low:.2f}, {high:.2f}]")
    stats[0] += f" ({len(results[env_id][method])})"
    return " | ".join(stats)


def command(tasks: Sequence[str], seeds: Sequence[int], settings: Sequence[str], directory: pathlib.Path) -> str:
    """The ``compare`` command that makes a variant's cells."""
    words = ["python", "-m", "sb3_diffusion_il.benchmark.compare", "--tasks", *tasks, "--methods", METHOD,
             "--seeds", *map(str, seeds)]
    words += ["--set", *settings] if settings else []
    words += [] if directory == compare.DEFAULT_RESULTS_DIR else ["--results-dir", str(directory)]
    return shlex.join(words)


def ablation(tasks: Sequence[str], variants: Sequence[Tuple[str, pathlib.Path]], references: Sequence[str]) -> str:
    """Markdown: a row per variant (and reference method), two columns per task, then the commands."""
    loaded: Dict[pathlib.Path, report.Results] = {
        d: report.load_results(d, defaults_only=False)[0] for _, d in variants
    }
    header = "| variant | " + " | ".join(f"{e} at {f:.0%} (seeds)" if f == 1 else f"at {f:.0%}"
                                         for e in tasks for f in FRACTIONS) + " |"
    lines = [header, "|---|" + "---|" * len(tasks) * len(FRACTIONS)]
    commands: List[str] = []
    for label, directory in variants:
        results = loaded[directory]
        settings = variant_settings(results, tasks, directory)
        named = f"{label} (`{', '.join(settings)}`)" if settings else label
        lines.append(f"| {named} | " + " | ".join(cells(results, e, METHOD) for e in tasks) + " |")
        seeds = sorted(set().union(*(results[e][METHOD] for e in tasks)))
        commands.append(f"{command(tasks, seeds, settings, directory)}  # {label}")
    baseline = loaded[variants[0][1]]
    for method in references:
        lines.append(f"| {method} (reference) | " + " | ".join(cells(baseline, e, method) for e in tasks) + " |")
    return "\n".join(lines + ["", "```bash", *commands, "```"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (``python -m sb3_diffusion_il.benchmark.ablation``)."""
    parser.add_argument("--tasks", nargs="+", required=True, choices=list(compare.BUDGETS), metavar="TASK")
    parser.add_argument("--variant", nargs=2, action="append", required=True, metavar=("LABEL", "DIR"))
    parser.add_argument("--reference", action="append", default=[], choices=[m for m in compare.METHODS if m != METHOD])
    parser.add_argument("--doc", type=pathlib.Path, help="markdown file whose ablation section is rewritten")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Prints the variants' table (and writes it into ``args.doc``)."""
    missing = [d for _, d in args.variant if not pathlib.Path(d).is_dir()]
    if missing:
        parser.error(f"no results directory {missing}: make its cells with `compare ... --results-dir DIR`")
    markdown = f"<!-- Written by `{args.command_line}`. -->\n\n" + ablation(
        args.tasks, [(label, pathlib.Path(d)) for label, d in args.variant], args.reference,
    )
    print(markdown)
    if args.doc:
        report.update_section(args.doc, markdown, "ablation")


def main(argv: Optional[Sequence[str]] = None) -> None:
    commands.run_standalone("python -m sb3_diffusion_il.benchmark.ablation", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    main()
