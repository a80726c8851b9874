"""Imitation quality before and after a harness change: archived results against current ones.

    python benchmarks/quality.py [--before benchmarks/results/harness-v1] [--after benchmarks/results] \
        [--out quality.json]

For every task and method present in both, and at half and all of the
budget (the report's fractions), prints the IQM of the normalised return over
seeds with its 95% bootstrap interval, before and after, and whether each IQM
lies within the other's interval. Writes the rows to
``benchmarks/results/quality.json`` (or the ``--out`` name there).
"""

import argparse
import os
import pathlib

from common import write_result

from sb3_diffusion_il.benchmark import report

RESULTS = pathlib.Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=pathlib.Path, default=RESULTS / "harness-v1")
    parser.add_argument("--after", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--out", default="quality.json", help="file name in benchmarks/results")
    args = parser.parse_args()
    before, _ = report.load_results(args.before, current_only=False)
    after, _ = report.load_results(args.after, defaults_only=False)
    rows = []
    for env_id in sorted(set(before) & set(after)):
        for method in sorted(set(before[env_id]) & set(after[env_id])):
            for fraction in report.FRACTIONS:
                (b, b_lo, b_hi), (a, a_lo, a_hi) = (
                    report.iqm_with_ci({method: report.score_matrix(results, [env_id], method, fraction)})[method]
                    for results in (before, after)
                )
                rows.append({
                    "env_id": env_id, "method": method, "budget_fraction": fraction,
                    "seeds": {"before": sorted(before[env_id][method]), "after": sorted(after[env_id][method])},
                    "before": [b, b_lo, b_hi], "after": [a, a_lo, a_hi],
                    "after_within_before_ci": b_lo <= a <= b_hi, "before_within_after_ci": a_lo <= b <= a_hi,
                })
                print(f"{env_id:22s} {method:16s} {fraction:4.0%}  before {b:5.2f} [{b_lo:5.2f}, {b_hi:5.2f}]  "
                      f"after {a:5.2f} [{a_lo:5.2f}, {a_hi:5.2f}]  after within before's CI: {b_lo <= a <= b_hi}")
    command = (f"python benchmarks/quality.py --before {os.path.relpath(args.before)} "
               f"--after {os.path.relpath(args.after)} --out {args.out}")
    write_result(RESULTS / args.out, {"rows": rows, "command": command})


if __name__ == "__main__":
    main()
