"""The comparison's table and plots, from the harness's result files.

    python -m sb3_diffusion_il.benchmark.report [--track short] [--results-dir DIR] [--out-dir docs] \\
        [--readme README.md]

(or ``sb3-diffusion-il plot``). For the short track it writes ``OUT_DIR/results.md``
(the table and the bundled experts' returns from their manifests, which the
docs' Benchmarks page includes), ``OUT_DIR/img/learning_curves.png``, and the
table between the README's ``results`` markers; for the long track
``OUT_DIR/results-long.md``, ``OUT_DIR/img/learning_curves_long.png`` and the
README's ``long-results`` section, with the env steps each run took to first
reach 0.9 of the expert.

Scores are normalised returns (0 random policy, 1 expert, from the bundled
manifests); aggregates are interquartile means over seeds (and tasks) with 95%
stratified-bootstrap confidence intervals from ``rliable``, at fractions of
each task's budget (half and all; a quarter too on the long track). Result
files of another harness version or budget are listed as ignored, never mixed in.
"""

import argparse
import json
import pathlib
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from sb3_diffusion_il import commands, data, files
from sb3_diffusion_il.benchmark import compare, tasks

FRACTIONS = {"short": (0.5, 1.0), "long": (0.25, 0.5, 1.0)}
# Per track: the results page, the plot, and the README's section.
OUTPUTS = {
    "short": ("results.md", "learning_curves.png", "results"),
    "long": ("results-long.md", "learning_curves_long.png", "long-results"),
}
# Normalised return a run must reach to count as having reached the expert.
REACHED = 0.9
BOOTSTRAP_SEED = 0
BOOTSTRAP_REPS = 2000
# Seeds every method needs on a task for the task to count in the overall row.
OVERALL_MIN_SEEDS = 3
# results.md is the part of the docs' Benchmarks page (docs/benchmarks.md) that
# the results decide; the page includes it and says how the numbers are made.
RESULTS_PAGE_HEAD = (
    "<!-- Written by `python -m sb3_diffusion_il.benchmark.report`; docs/benchmarks.md includes it. -->\n\n"
    "![learning curves]({plot})\n\n"
)
DOCS_DIR = pathlib.Path("docs")
Results = Dict[str, Dict[str, Dict[int, dict]]]  # env_id -> method -> seed -> result


def load_results(
    results_dir: pathlib.Path, current_only: bool = True, version: int = compare.HARNESS_VERSION,
    defaults_only: bool = True,
) -> Tuple[Results, List[str]]:
    """Results by task, method and seed, and a line for each file left out.

    :param current_only: leave out files of another harness version, budget or
        demonstrations
        (False: keep them, e.g. to plot a small live run)
    :param version: the harness version to keep (default: today's), e.g. an older
        one's in the directory its files were moved to
    :param defaults_only: with ``current_only``, also leave out DiffusionScoreIL
        cells made with settings other than today's defaults (False: keep a
        variant's, as the ablation does)
    """
    results: Results = defaultdict(lambda: defaultdict(dict))
    ignored = []
    for path in sorted(results_dir.glob(compare.CELL_FILES)):
        result = json.loads(path.read_text())
        if current_only and not compare.is_current(result, version):
            ignored.append(
                f"{path}: harness version {result.get('harness_version')}, budget {result.get('budget')}"
                f"{'' if compare.made_with_bundled_demonstrations(result) else ', other demonstrations'} "
                f"(kept: version {version}, "
                f"budget {compare.TRACKS[result.get('track', 'short')].budgets.get(result.get('env_id'))}, "
                "the bundled demonstrations)",
            )
            continue
        if current_only and defaults_only and not compare.made_with(result):
            ignored.append(f"{path}: DiffusionScoreIL settings {compare.settings_of(result)} (kept: today's defaults)")
            continue
        results[result["env_id"]][result["method"]][result["seed"]] = result
    return results, ignored


def normalized(result: dict, value: float) -> float:
    """``value`` on the scale of the expert ``result`` imitated: 1 its return, 0 a random policy's.

    Results record both returns (the task's expert may be replaced later); files
    from before they did are scored against the bundled expert they were made with.
    """
    reference = result.get("reference_returns") or compare.reference_returns(result["env_id"])
    return (value - reference["random"]) / (reference["expert"] - reference["random"])


def normalized_at(result: dict, fraction: float) -> float:
    """Normalised return at the first evaluation at or past ``fraction`` of the budget.

    BC takes no env steps: its one evaluation stands for every budget.
    """
    target = fraction * result["budget"]
    steps, value = next(((s, v) for s, v, _ in result["curve"] if s >= target), result["curve"][-1][:2])
    return normalized(result, value)


def score_matrix(results: Results, env_ids: Sequence[str], method: str, fraction: float) -> np.ndarray:
    """Scores of shape (n_seeds, n_tasks) over the seeds every task has."""
    seeds = sorted(set.intersection(*(set(results[e][method]) for e in env_ids)))
    return np.array([[normalized_at(results[e][method][s], fraction) for e in env_ids] for s in seeds])


def iqm_with_ci(matrices: Dict[str, np.ndarray]) -> Dict[str, Tuple[float, float, float]]:
    """IQM and its 95% bootstrap interval for each method's (n_seeds, n_tasks) scores."""
    from rliable import library as rly
    from rliable import metrics

    estimates = {}
    # rliable's stratified bootstrap draws from NumPy's global RNG whatever its
    # random_state says, so that is seeded, afresh per method (a table regenerates
    # byte for byte, and one method's interval does not depend on the others in it),
    # and restored after.
    global_state = np.random.get_state()
    try:
        for method, matrix in matrices.items():
            np.random.seed(BOOTSTRAP_SEED)
            point, interval = rly.get_interval_estimates(
                {method: matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=BOOTSTRAP_REPS,
            )
            estimates[method] = (float(point[method][0]), float(interval[method][0, 0]), float(interval[method][1, 0]))
    finally:
        np.random.set_state(global_state)
    return estimates


def table(results: Results, track: str = "short") -> str:
    """Markdown: a row per task (and overall), a column per method, at each budget fraction."""
    budgets = compare.TRACKS[track].budgets
    methods = [m for m in compare.METHODS if any(m in results[e] for e in results)]
    tasks = [e for e in budgets if e in results]
    # A task joins the overall row once every method run there has its seeds, so
    # that a partly run task does not cut the seeds the others are scored on; a
    # method not run on one of the row's tasks gets no overall score.
    complete = [
        e for e in tasks if all(n == 0 or n >= OVERALL_MIN_SEEDS for n in (len(results[e].get(m, ())) for m in methods))
    ]
    rows = [(e, [e]) for e in tasks] + ([(f"overall ({len(complete)} tasks)", complete)] if len(complete) > 1 else [])
    lines = []
    for fraction in FRACTIONS[track]:
        lines += [
            f"**Normalised return at {fraction:.0%} of the budget** (IQM over seeds, 95% CI)",
            "",
            "| task | budget | seeds | " + " | ".join(methods) + " |",
            "|---|---|---|" + "---|" * len(methods),
        ]
        for label, env_ids in rows:
            present = [m for m in methods if all(results[e].get(m) for e in env_ids)]
            matrices = {m: score_matrix(results, env_ids, m, fraction) for m in present}
            stats = iqm_with_ci(matrices)
            cells = [
                f"{stats[m][0]:.2f} [{stats[m][1]:.2f}, {stats[m][2]:.2f}]" if m in stats else "–" for m in methods
            ]
            budget = f"{int(fraction * budgets[label]):,}" if label in budgets else "–"
            n_seeds = "/".join(str(len(matrices[m])) if m in matrices else "0" for m in methods)
            lines.append(f"| {label} | {budget} | {n_seeds} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def first_reached(result: dict, level: float = REACHED) -> Optional[int]:
    """Env steps of the first evaluation at or above ``level`` of the expert (None: never)."""
    return next((steps for steps, value, _ in result["curve"] if normalized(result, value) >= level), None)


def steps_to_expert(results: Results, track: str = "long") -> str:
    """Markdown: per task and method, the env steps each seed took to first reach
    ``REACHED`` of the expert, their median, and DiffusionScoreIL's median over ``rl``'s."""
    budgets = compare.TRACKS[track].budgets
    methods = [m for m in compare.METHODS if m != "bc" and any(m in results[e] for e in results)]
    lines = [
        f"**Env steps to first reach {REACHED} of the expert** (per seed, then their median; – not within the budget)",
        "",
        "| task | " + " | ".join(methods) + " | diffusion_score / rl |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for env_id in [e for e in budgets if e in results]:
        cells, medians = [], {}
        for method in methods:
            runs = results[env_id].get(method, {})
            steps = [first_reached(runs[seed]) for seed in sorted(runs)]
            # A run that never reached it counts as never (inf): a median of never is "–".
            median = np.median([np.inf if s is None else s for s in steps]) if steps else np.inf
            medians[method] = median if np.isfinite(median) else None
            shown = ", ".join("–" if s is None else f"{s:,}" for s in steps) or "–"
            cells.append(f"{shown} ({'–' if medians[method] is None else f'{medians[method]:,.0f}'})")
        ours, rl = medians.get("diffusion_score"), medians.get("rl")
        ratio = f"{ours / rl:.2f}" if ours is not None and rl else "–"
        lines.append(f"| {env_id} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines) + "\n"


def plot_curves(results: Results, path: pathlib.Path, track: str = "short") -> None:
    """Normalised-return learning curves per task: mean over seeds, shaded min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [e for e in compare.TRACKS[track].budgets if e in results]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, env_id in zip(axes[0], tasks):
        for method in compare.METHODS:
            runs = list(results[env_id].get(method, {}).values())
            if not runs:
                continue
            if method == "bc":
                values = [normalized(r, r["final_return"]) for r in runs]
                ax.axhline(np.mean(values), ls=":", color="gray", label=f"bc ({len(runs)} seeds)")
                continue
            steps = np.array([s for s, _, _ in runs[0]["curve"]])
            curves = np.array([[normalized(r, v) for _, v, _ in r["curve"]] for r in runs])
            ax.plot(steps, curves.mean(0), label=f"{method} ({len(runs)} seeds)")
            ax.fill_between(steps, curves.min(0), curves.max(0), alpha=0.2)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        ax.set(title=env_id, xlabel="env steps", ylabel="normalised return (1 = expert)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def demos_table() -> str:
    """The bundled experts: returns over their demonstration episodes, a random policy's,
    the fraction of steps upright (where the body can fall), budgets."""
    rows = ["| task | expert return | upright | random return | expert budget |", "|---|---|---|---|---|"]
    bundled = set(data.bundled_env_ids())
    for env_id in [e for e in tasks.TASKS if e in bundled]:
        s = data.expert_stats(env_id)
        upright = s.get("upright_fraction")
        budget = (f"{s['recorded_from']}'s episodes, ended at the fall" if "recorded_from" in s
                  else f"{s['expert_timesteps'] // 1000}k {s.get('expert_algo', 'SAC')} steps")
        rows.append(
            f"| {env_id} | {s['expert_return_mean']:.1f} ± {s['expert_return_std']:.1f} "
            f"| {'–' if upright is None else f'{upright:.0%}'} "
            f"| {s['random_return_mean']:.1f} ± {s['random_return_std']:.1f} | {budget} |",
        )
    return "\n".join(rows)


def summary(results: Results, ignored: Sequence[str], track: str = "short") -> str:
    """Markdown: the table (and on the long track the steps to the expert), then the
    result files `load_results` left out."""
    markdown = table(results, track) + (f"\n{steps_to_expert(results, track)}" if track == "long" else "")
    if ignored:
        markdown += "\nLeft out (other harness version or budget):\n\n" + "\n".join(f"- {i}" for i in ignored) + "\n"
    return markdown


def update_section(path: pathlib.Path, markdown: str, section: str) -> None:
    """Replaces the text between the markdown file's markers of ``section`` with ``markdown``."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} markers to put the table between.")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    files.atomic_write_bytes(path, f"{head}{start}\n{markdown}\n{end}{tail}".encode())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (``python -m sb3_diffusion_il.benchmark.report``, ``sb3-diffusion-il plot``)."""
    parser.add_argument("--track", choices=list(compare.TRACKS), default="short",
                        help="which table: the short track's (default) or the long one's")
    parser.add_argument("--results-dir", type=pathlib.Path, default=None,
                        help="the result files `compare` wrote (default: the track's)")
    parser.add_argument("--out-dir", type=pathlib.Path, default=pathlib.Path("docs"),
                        help="where results.md and img/learning_curves.png go (the long track's: results-long.md, "
                             "img/learning_curves_long.png; default: docs)")
    # A str, not a Path: Path("") is "." and could not say "none".
    parser.add_argument("--readme", default="README.md",
                        help="README whose results section is rewritten (default: README.md; '' for none)")
    parser.add_argument("--harness-version", type=commands.positive_int, default=compare.HARNESS_VERSION,
                        help="the harness version whose files make the table (default: today's; an older "
                             "one's files are kept in benchmarks/results/harness-v2 and the like)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Writes the table and plots from the result files ``args`` point to."""
    readme = pathlib.Path(args.readme) if args.readme else None
    if readme and not readme.is_file():
        parser.error(f"no README at {args.readme}: name one with --readme, or pass --readme '' for none")
    results_dir = args.results_dir or compare.TRACKS[args.track].results_dir
    results, ignored = load_results(results_dir, version=args.harness_version)
    if not results:
        compare_command = (
            "python -m sb3_diffusion_il.benchmark.compare" if parser.prog.startswith("python ")
            else f"{parser.prog.split()[0]} compare"
        )
        parser.error(
            f"no current result files in {results_dir} ({len(ignored)} left out as outdated): "
            f"run `{compare_command} --track {args.track}` first",
        )
    markdown = summary(results, ignored, args.track)
    page_name, plot_name, section = OUTPUTS[args.track]
    experts = "\n### The bundled experts\n\n" + demos_table() + "\n" if args.track == "short" else ""
    plot = args.out_dir / "img" / plot_name
    plot_curves(results, plot, args.track)
    # The page is included into docs/benchmarks.md, so the plot is linked from the docs folder.
    link = plot.relative_to(DOCS_DIR) if plot.is_relative_to(DOCS_DIR) else plot
    page = RESULTS_PAGE_HEAD.format(plot=link) + markdown + experts
    files.atomic_write_bytes(args.out_dir / page_name, page.encode())
    if readme:
        update_section(readme, markdown, section)
    print(markdown)


def main(argv: Optional[Sequence[str]] = None) -> None:
    commands.run_standalone("python -m sb3_diffusion_il.benchmark.report", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    main()
