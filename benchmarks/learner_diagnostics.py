"""What the SAC learner saw in comparison cells: a digest of their training logs.

    python benchmarks/learner_diagnostics.py --logs runs/compare/seals__Hopper-v1 --out learner-diagnostics-hopper.json

For every cell log under ``--logs`` (the ``progress.csv`` that ``compare
--log-dir`` writes; the logs themselves are not committed), averaged over the
last quarter of its rounds: SAC's entropy temperature (``train/ent_coef``)
and, for DiffusionScoreIL, the mean cost of the learner's newest states
(``diffusion/cost_learner``), the mean cost of the replay minibatches it
relabelled (``diffusion/relabel_cost_mean``) and their ratio. A ratio well
above 1 means old, costly transitions dominate the minibatches the rewards
are standardised over. Writes the rows to ``benchmarks/results/<--out>``.
"""

import argparse
import os
import pathlib

import pandas as pd
from common import write_result

RESULTS = pathlib.Path(__file__).parent / "results"
COLUMNS = {
    "ent_coef": "mean/gen/train/ent_coef",
    "cost_learner": "diffusion/cost_learner",
    "relabel_cost_mean": "diffusion/relabel_cost_mean",
}


def digest(progress: pd.DataFrame) -> dict:
    """The late-training means of ``COLUMNS`` present in one cell's log."""
    late = progress.iloc[-max(1, len(progress) // 4):]
    row = {name: float(late[column].mean()) for name, column in COLUMNS.items() if column in late}
    if "cost_learner" in row:
        row["replay_to_learner_cost"] = row["relabel_cost_mean"] / row["cost_learner"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=pathlib.Path, nargs="+", required=True,
                        help="directories holding one log directory per cell")
    parser.add_argument("--out", required=True, help="file name in benchmarks/results")
    args = parser.parse_args()
    rows = []
    for logs in args.logs:
        for path in sorted(logs.glob("*/progress.csv")):
            figures = digest(pd.read_csv(path))
            if not figures:  # BC trains no SAC
                continue
            row = {"cell": os.path.relpath(path.parent), **figures}
            rows.append(row)
            print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else v for k, v in row.items()))
    if not rows:
        parser.error(f"no SAC cell's */progress.csv under {[str(p) for p in args.logs]}: run compare there first.")
    command = (f"python benchmarks/learner_diagnostics.py --logs {' '.join(os.path.relpath(p) for p in args.logs)} "
               f"--out {args.out}")
    write_result(RESULTS / args.out, {"rows": rows, "command": command})


if __name__ == "__main__":
    main()
