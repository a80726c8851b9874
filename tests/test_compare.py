"""The comparison harness and its report: cells, skipping, outdated files, the table."""

import dataclasses
import functools
import json
import pathlib
import re
import shlex

import numpy as np
import pytest

from sb3_diffusion_il import data
from sb3_diffusion_il.benchmark import ablation, compare, report


DEFAULTS_VARIANT = "diffusion_score + SAC, relabelled replay, bfloat16 cost"


def fake_result(method, seed, final_return, env_id="Pendulum-v1", **overrides):
    budget = compare.BUDGETS[env_id]
    steps = [0, budget // 2, budget] if method != "bc" else [0]
    curve = [[s, final_return, 1.0] for s in steps]
    return {
        "harness_version": compare.HARNESS_VERSION, "default_changes": len(compare.DEFAULT_CHANGES),
        "method": method, "env_id": env_id, "seed": seed, "budget": budget,
        "variant": DEFAULTS_VARIANT if method == "diffusion_score" else f"{method} + SAC",
        "curve": curve, "final_return": final_return, **overrides,
    }


def write(results_dir, result):
    cell = compare.Cell(result["method"], result["env_id"], result["seed"], result["budget"])
    path = cell.path(results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return cell


def test_unknown_method_or_task_lists_the_valid_ones():
    with pytest.raises(ValueError, match="diffusion_score.*gail.*airl.*bc"):
        compare.check_choices(["dac"], ["Pendulum-v1"])
    with pytest.raises(ValueError, match="seals/Hopper-v1"):
        compare.check_choices(["gail"], ["Humanoid-v4"])
    with pytest.raises(SystemExit) as e:
        compare.main(["--methods", "dac"])
    assert e.value.code != 0


def test_done_cells_are_skipped_and_outdated_ones_rerun(tmp_path):
    done = write(tmp_path, fake_result("gail", 0, -200.0))
    old = write(tmp_path, fake_result("gail", 1, -200.0, harness_version=0))
    todo = compare.Cell("gail", "Pendulum-v1", 2, compare.BUDGETS["Pendulum-v1"])
    assert compare.pending_cells([done, old, todo], tmp_path) == [old, todo]


def test_cells_made_with_an_earlier_default_keep_its_setting(tmp_path):
    name, earlier, _ = next(change for change in compare.DEFAULT_CHANGES if change[2])
    before = write(tmp_path, fake_result("diffusion_score", 0, -200.0, default_changes=0))
    current = write(tmp_path, fake_result("diffusion_score", 1, -200.0))
    # Told today's default by name before it was one: made as today's defaults make it.
    told = write(tmp_path, fake_result("diffusion_score", 2, -200.0, default_changes=0,
                                       variant=f"{DEFAULTS_VARIANT}, {name}={today_default(name)}"))
    assert compare.pending_cells([current, told], tmp_path) == []
    assert compare.pending_cells([before], tmp_path, {name: earlier}) == []
    # Neither variant's cell is overwritten by the other's run.
    with pytest.raises(ValueError, match=f"seed0.*'{name}': '{earlier}'.*its own --results-dir"):
        compare.pending_cells([current, before], tmp_path)
    with pytest.raises(ValueError, match="seed1.*settings {}"):
        compare.pending_cells([current], tmp_path, {name: earlier})
    results, ignored = report.load_results(tmp_path)
    assert list(results["Pendulum-v1"]["diffusion_score"]) == [1, 2]
    assert len(ignored) == 1 and f"'{name}': '{earlier}'" in ignored[0]
    everything, _ = report.load_results(tmp_path, defaults_only=False)
    assert ablation.settings_of(everything["Pendulum-v1"]["diffusion_score"][0]) == (f"{name}={earlier}",)


def today_default(name):
    return compare.trainer_defaults()[name]


def test_default_changes_name_defaults_that_changed():
    for name, earlier, _ in compare.DEFAULT_CHANGES:
        assert str(today_default(name)) != earlier


def test_a_default_that_changed_only_episodes_that_end_early_keeps_fixed_horizon_cells(tmp_path):
    changes = [change[:2] for change in compare.DEFAULT_CHANGES]
    for earlier in ("False", "terminal-state"):
        before = changes.index(("absorbing_states", earlier))
        fixed = fake_result("diffusion_score", 0, -200.0, default_changes=before)
        ending = fake_result("diffusion_score", 0, 900.0, env_id="InvertedPendulum-v4", default_changes=before)
        assert compare.settings_of(fixed) == {}
        assert compare.settings_of(ending) == {"absorbing_states": earlier}


def test_report_leaves_out_other_versions_and_budgets(tmp_path):
    write(tmp_path, fake_result("gail", 0, -200.0))
    write(tmp_path, fake_result("gail", 1, -200.0, harness_version=0))
    other_budget = fake_result("gail", 2, -200.0)
    other_budget["budget"] = 123
    write(tmp_path, other_budget)
    # Made with demonstrations other than the bundled ones (an expert since replaced).
    write(tmp_path, fake_result("gail", 3, -200.0, demonstrations_sha256="0" * 64))
    write(tmp_path, fake_result("gail", 4, -200.0, demonstrations_sha256=data.expert_stats("Pendulum-v1")["sha256"]))
    # Another tool's file beside the cells' (an expert's learning curve) is not a cell.
    (tmp_path / "expert-attempts").mkdir()
    (tmp_path / "expert-attempts" / "seals__Ant-v1-sac-curve.json").write_text("[[0, 1.0, 0.0]]")
    results, ignored = report.load_results(tmp_path)
    assert list(results["Pendulum-v1"]["gail"]) == [0, 4]
    assert len(ignored) == 3 and any("budget 123" in line for line in ignored)
    assert any("other demonstrations" in line for line in ignored)


def test_results_are_scored_against_the_expert_they_imitated():
    result = fake_result("gail", 0, 50.0, reference_returns={"expert": 100.0, "random": 0.0})
    assert report.normalized(result, 50.0) == 0.5
    # Files from before results recorded it: the bundled expert's.
    legacy = fake_result("gail", 0, -200.0)
    assert report.normalized(legacy, -200.0) == pytest.approx(data.normalized_return("Pendulum-v1", -200.0))


def test_table_and_plot_from_result_files(tmp_path):
    stats = data.expert_stats("Pendulum-v1")
    expert, random = stats["expert_return_mean"], stats["random_return_mean"]
    for seed in range(3):
        write(tmp_path, fake_result("diffusion_score", seed, expert))
        write(tmp_path, fake_result("gail", seed, random))
        write(tmp_path, fake_result("bc", seed, random))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold table\n<!-- results:end -->\nrest\n")
    report.main(["--results-dir", str(tmp_path), "--out-dir", str(tmp_path / "docs"), "--readme", str(readme)])
    markdown = (tmp_path / "docs" / "results.md").read_text()
    assert "old table" not in readme.read_text() and "| Pendulum-v1 | 10,000 |" in readme.read_text()
    assert f"| Pendulum-v1 | {expert:.1f} ± {stats['expert_return_std']:.1f} |" in markdown
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("rest\n")
    row = next(line for line in markdown.splitlines() if line.startswith("| Pendulum-v1 | 10,000 |"))
    assert "| 3/3/3 | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] | 0.00 [0.00, 0.00] |" in row
    assert (tmp_path / "docs" / "img" / "learning_curves.png").stat().st_size > 1000


def test_readme_table_is_what_the_committed_results_give():
    root = pathlib.Path(__file__).parent.parent
    results, ignored = report.load_results(root / "benchmarks" / "results")
    block = f"<!-- results:start -->\n{report.summary(results, ignored)}\n<!-- results:end -->"
    assert block in (root / "README.md").read_text(), "run `python -m sb3_diffusion_il.benchmark.report`"


def test_overall_row_leaves_out_partly_run_tasks(tmp_path):
    for env_id in ("Pendulum-v1", "InvertedPendulum-v4"):
        for seed in range(3):
            for method in ("diffusion_score", "gail"):
                write(tmp_path, fake_result(method, seed, -200.0, env_id=env_id))
    write(tmp_path, fake_result("diffusion_score", 0, 0.0, env_id="seals/Hopper-v1"))
    write(tmp_path, fake_result("gail", 0, 0.0, env_id="seals/Hopper-v1"))
    write(tmp_path, fake_result("gail", 0, 0.0, env_id="seals/Walker2d-v1"))
    results, _ = report.load_results(tmp_path)
    lines = report.table(results).splitlines()
    overall = [line for line in lines if line.startswith("| overall")]
    assert overall and all(line.startswith("| overall (2 tasks) | – | 3/3 |") for line in overall)
    walker = [line for line in lines if line.startswith("| seals/Walker2d-v1 |")]
    assert walker and all("| 0/1 | – |" in line for line in walker)  # no diffusion_score seed there yet


def test_overall_row_takes_tasks_a_method_has_not_run(tmp_path):
    for env_id in ("Pendulum-v1", "InvertedPendulum-v4"):
        for seed in range(3):
            write(tmp_path, fake_result("diffusion_score", seed, -200.0, env_id=env_id))
            write(tmp_path, fake_result("gail", seed, -200.0, env_id=env_id))
            if env_id == "Pendulum-v1":
                write(tmp_path, fake_result("airl", seed, -200.0, env_id=env_id))
    results, _ = report.load_results(tmp_path)
    overall = [line for line in report.table(results).splitlines() if line.startswith("| overall")]
    # airl has no cell on InvertedPendulum-v4: the task still counts, airl gets no overall score.
    assert overall and all(line.startswith("| overall (2 tasks) | – | 3/3/0 |") for line in overall)
    assert all(line.endswith("| – |") for line in overall)


def test_bc_cell_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "BC_EPOCHS", 1)
    cell = compare.Cell("bc", "Pendulum-v1", 0, compare.BUDGETS["Pendulum-v1"])
    result = compare.run_cell(cell, tmp_path, tmp_path / "logs")
    assert json.loads(cell.path(tmp_path).read_text()) == json.loads(json.dumps(result))
    assert compare.is_current(result) and result["env_steps_per_second"] is None
    assert len(result["curve"]) == 1 and result["curve"][0][0] == 0


def test_diffusion_score_cell_records_settings_other_than_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "ROUND_STEPS", 500)
    monkeypatch.setattr(compare, "DiffusionScoreIL", functools.partial(
        compare.DiffusionScoreIL, expert_fit_steps=20, learner_fit_steps=2,
    ))
    cell = compare.Cell("diffusion_score", "Pendulum-v1", 0, 1000)
    settings = {"relabel_refresh": 300, "cost_timesteps": 8}
    result = compare.run_cell(cell, tmp_path, tmp_path / "logs", settings)
    assert result["variant"].endswith(", relabel_refresh=300, cost_timesteps=8")
    assert result["settings"] == {"relabel_refresh": "300", "cost_timesteps": "8"}
    assert compare.settings_of(result) == {"cost_timesteps": "8", "relabel_refresh": "300"}
    assert [steps for steps, _, _ in result["curve"]] == [0, 500, 1000]


def test_command_line_passes_only_the_settings_it_names(tmp_path, monkeypatch):
    passed = []
    monkeypatch.setattr(compare, "run_cells", lambda *args: passed.append(args[5]) or [])
    base = ["--tasks", "Pendulum-v1", "--results-dir", str(tmp_path)]
    compare.main(base)
    compare.main(base + ["--debug-use-ground-truth", "--reward-std", "1"])
    compare.main(base + ["--conditioning", "state_action"])
    compare.main(base + ["--reward-saturation", "none"])
    compare.main(base + ["--reward-saturation", "0.5"])
    assert passed == [
        {}, {"reward_std": 1.0, "debug_use_ground_truth": True},
        {"conditioning": "state_action"}, {"reward_saturation": None}, {"reward_saturation": 0.5},
    ]


def test_set_passes_any_trainer_argument_as_a_literal(tmp_path, monkeypatch):
    passed = []
    monkeypatch.setattr(compare, "run_cells", lambda *args: passed.append(args[5]) or [])
    compare.main(["--tasks", "Pendulum-v1", "--results-dir", str(tmp_path), "--reward-std", "1", "--set",
                  "diffusion_steps=5000", 'score_opt_kwargs={"lr": 5e-3}', "cost_precision=float32"])
    assert passed == [
        {"reward_std": 1.0, "diffusion_steps": 5000, "score_opt_kwargs": {"lr": 5e-3}, "cost_precision": "float32"},
    ]


@pytest.mark.parametrize("assignment, message", [
    ("diffusion_steps", "write NAME=VALUE"),
    ("diffusion_step=5000", "'diffusion_step' is not a DiffusionScoreIL argument"),
    ("seed=3", "'seed' is not a DiffusionScoreIL argument the harness leaves to you"),
])
def test_set_refuses_what_it_cannot_pass(tmp_path, capsys, assignment, message):
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--tasks", "Pendulum-v1", "--results-dir", str(tmp_path), "--set", assignment])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("method", ["diffusion_score", "gail"])
def test_on_policy_cell_end_to_end(tmp_path, monkeypatch, method):
    """seals/CartPole-v0's learner is PPO: rounds are its rollouts, its reward the wrapped env's."""
    small = compare.Learner("PPO", dict(n_steps=64, batch_size=64, n_epochs=1), n_envs=2)
    monkeypatch.setitem(compare.LEARNERS, "seals/CartPole-v0", small)
    monkeypatch.setitem(compare.ADVERSARIAL_KWARGS, "seals/CartPole-v0", dict(demo_batch_size=64))
    monkeypatch.setattr(compare, "DiffusionScoreIL", functools.partial(
        compare.DiffusionScoreIL, expert_fit_steps=20, learner_fit_steps=2,
    ))
    cell = compare.Cell(method, "seals/CartPole-v0", 0, 1280)
    result = compare.run_cell(cell, tmp_path, tmp_path / "logs")
    assert result["learner"] == "PPO" and result["learner_kwargs"]["n_envs"] == 2
    assert "relabelled" not in result["variant"]
    assert result["curve"][-1][0] == 1280


# Result fields that time the run, and differ between any two runs of a cell.
TIMINGS = ("wall_seconds", "env_steps_per_second")


def contents(results_dir):
    return {
        path.relative_to(results_dir): {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMINGS}
        for path in sorted(results_dir.glob("*/*.json"))
    }


# Tiny cells: one 1,000-step round of SAC, score networks fitted for a few steps.
TINY = {"expert_fit_steps": 20, "learner_fit_steps": 2}


def test_ray_backend_writes_what_the_process_pool_does(tmp_path):
    """A local Ray cluster of 2 CPUs and 4 tiny cells: the same files as the process pool's but for timings."""
    cells = [compare.Cell("diffusion_score", "Pendulum-v1", seed, 1000) for seed in range(4)]
    assert compare.run_cells(cells, tmp_path / "process", tmp_path / "logs", 2, diffusion_kwargs=TINY) == []
    assert compare.run_cells(
        cells, tmp_path / "ray", tmp_path / "logs-ray", 2, diffusion_kwargs=TINY, backend="ray",
    ) == []
    written = contents(tmp_path / "ray")
    assert len(written) == 4 and written == contents(tmp_path / "process")


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path):
    good = compare.Cell("diffusion_score", "Pendulum-v1", 0, 1000)
    bad = compare.Cell("diffusion_score", "NoSuchTask-v0", 0, 1000)
    failures = compare.run_cells([bad, good], tmp_path, tmp_path / "logs", 2, diffusion_kwargs=TINY, backend="ray")
    assert [cell for cell, _ in failures] == [bad] and "NoSuchTask" in failures[0][1]
    assert good.path(tmp_path).exists()
    assert not bad.path(tmp_path).parent.exists()  # nothing written for it, not even its folder


def test_address_without_ray_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        compare.main(["--tasks", "Pendulum-v1", "--results-dir", str(tmp_path), "--address", "auto"])


def test_report_intervals_are_reproducible_and_per_method():
    rng = np.random.default_rng(0)
    scores = {"a": rng.random((3, 2)), "b": rng.random((3, 2))}
    both = report.iqm_with_ci(scores)
    for _ in range(3):
        assert both == report.iqm_with_ci(scores)
    assert both["b"] == report.iqm_with_ci({"b": scores["b"]})["b"]
    state = np.random.get_state()[1].copy()
    report.iqm_with_ci(scores)
    assert (np.random.get_state()[1] == state).all()  # the global RNG is left as it was


def test_ablation_rows_name_each_variant_and_the_command_that_makes_it(tmp_path):
    base, raw = tmp_path / "base", tmp_path / "raw"
    for seed in range(3):
        write(base, fake_result("diffusion_score", seed, -200.0, variant=DEFAULTS_VARIANT))
        write(base, fake_result("gail", seed, -1500.0, variant="gail (state-only reward) + SAC"))
        variant = DEFAULTS_VARIANT + ", feature_std_floor=None, score_opt_kwargs={'a': 1, 'b': 2}"
        write(raw, fake_result("diffusion_score", seed, -200.0, variant=variant))
    markdown = ablation.ablation(["Pendulum-v1"], [("defaults", base), ("raw", raw)], ["gail"])
    lines = markdown.splitlines()
    expert = report.normalized(fake_result("diffusion_score", 0, -200.0), -200.0)
    assert lines[2].startswith(f"| defaults | {expert:.2f} [{expert:.2f}, {expert:.2f}] (3) |")
    assert lines[3].startswith("| raw (`feature_std_floor=None, score_opt_kwargs={'a': 1, 'b': 2}`) |")
    assert lines[4].startswith("| gail (reference) |")
    assert (f"--seeds 0 1 2 --set feature_std_floor=None 'score_opt_kwargs={{'\"'\"'a'\"'\"': 1, "
            f"'\"'\"'b'\"'\"': 2}}' --results-dir {raw}  # raw") in markdown


def test_ablation_refuses_two_variants_in_one_directory(tmp_path):
    write(tmp_path, fake_result("diffusion_score", 0, -200.0, variant=DEFAULTS_VARIANT))
    write(tmp_path, fake_result("diffusion_score", 1, -200.0, variant=DEFAULTS_VARIANT + ", reward_std=1.0"))
    with pytest.raises(ValueError, match="2 variants.*its own --results-dir"):
        ablation.ablation(["Pendulum-v1"], [("mixed", tmp_path)], [])


def test_docs_ablation_table_is_what_the_committed_results_give(monkeypatch, capsys):
    root = pathlib.Path(__file__).parent.parent
    page = (root / "docs" / "benchmarks.md").read_text()
    written_by = re.search(r"<!-- Written by `python -m sb3_diffusion_il.benchmark.ablation (.*)`. -->", page)
    assert written_by, "docs/benchmarks.md has no ablation table"
    argv = shlex.split(written_by.group(1))
    if "--doc" in argv:  # the test reads the page, it does not rewrite it
        del argv[argv.index("--doc"):argv.index("--doc") + 2]
    monkeypatch.chdir(root)
    ablation.main(argv)
    table = capsys.readouterr().out.split("-->", 1)[1].strip()
    assert table in page, f"run `python -m sb3_diffusion_il.benchmark.ablation {written_by.group(1)}`"


# -- the long track ---------------------------------------------------------------------


def test_long_track_reports_steps_to_the_expert():
    def long_result(method, seed, normalized_curve):
        budget = compare.LONG_BUDGET
        reference = compare.reference_returns("seals/Hopper-v1")
        returns = [reference["random"] + v * (reference["expert"] - reference["random"]) for v in normalized_curve]
        steps = np.linspace(0, budget, len(returns)).astype(int).tolist()
        return {"method": method, "env_id": "seals/Hopper-v1", "seed": seed, "budget": budget, "track": "long",
                "reference_returns": reference, "curve": [[s, r, 0.0] for s, r in zip(steps, returns)],
                "final_return": returns[-1]}

    results = {"seals/Hopper-v1": {
        "diffusion_score": {0: long_result("diffusion_score", 0, [0, 0.5, 0.95, 1.0]),
                            1: long_result("diffusion_score", 1, [0, 0.2, 0.4, 0.5])},
        "rl": {0: long_result("rl", 0, [0, 0.91, 1.0, 1.0]), 1: long_result("rl", 1, [0, 0.3, 0.92, 1.0])},
    }}
    markdown = report.steps_to_expert(results)
    # diffusion_score: 200,000 and never (median past the budget); rl: 100,000 and 200,000 (median 150,000).
    assert "| seals/Hopper-v1 | 200,000, – (–) | 100,000, 200,000 (150,000) | – |" in markdown
    results["seals/Hopper-v1"]["diffusion_score"][1] = long_result("diffusion_score", 1, [0, 0.9, 0.9, 0.9])
    assert "100,000, 200,000 (150,000) | 1.00 |" in report.steps_to_expert(results)


def test_long_cell_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(compare.TRACKS, "long", dataclasses.replace(
        compare.TRACKS["long"], checkpoint_every=200, n_eval_points=3, default_learner=compare.Learner("SAC")))
    monkeypatch.setattr(compare, "ROUND_STEPS", 200)
    monkeypatch.setattr(compare, "N_EVAL_EPISODES", 1)
    cell = compare.Cell("rl", "Pendulum-v1", 0, 600, "long")
    saves = []
    original = compare.CellCheckpoints.save

    def save_then_stop(self, trainer, steps, progress):
        original(self, trainer, steps, progress)
        saves.append(steps)
        if steps == 400 and len(saves) == 2:
            raise KeyboardInterrupt  # the session ends
    monkeypatch.setattr(compare.CellCheckpoints, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        compare.train_cell(cell, tmp_path / "logs", work_dir=tmp_path / "work")
    logs = tmp_path / "logs" / cell.path(pathlib.Path()).with_suffix("")
    (logs / "progress.csv").write_text("the first run's log")
    kept = sorted(p.name for p in (tmp_path / "work").rglob("*") if p.is_file())
    assert kept == ["0000400.json", "0000400.pt"]  # the older pair deleted once the newer was whole
    result = compare.train_cell(cell, tmp_path / "logs", work_dir=tmp_path / "work")
    assert result["resumed_from"] == 400 and result["track"] == "long"
    assert [steps for steps, _, _ in result["curve"]] == [0, 200, 400, 600]
    # The resumed run logged beside the first run's log, not over it.
    assert (logs / "progress.csv").read_text() == "the first run's log"
    assert (logs / "from-400" / "progress.csv").exists()
