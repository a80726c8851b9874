"""The quickstart's claim, with its fixed seed: the learner closes >= 90% of the gap.

Returns are the true environment reward (mean of 10 evaluation episodes).
"""

import importlib.util
import pathlib

import pytest
import torch as th

from sb3_diffusion_il import DiffusionScoreReward

QUICKSTART = pathlib.Path(__file__).parents[1] / "examples" / "quickstart.py"
BAR = 0.9


def load_quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quickstart_closes_90_percent_of_the_gap():
    result = load_quickstart().run(seed=0, progress_bar=False)
    assert result["before"] < result["random"] + 0.5 * (result["expert"] - result["random"])
    assert result["gap_closed"] >= BAR, result


@pytest.mark.slow
def test_same_run_with_zero_reward_fails_the_bar(monkeypatch):
    """The bar is not met by SAC alone: the learning comes from the cost."""
    monkeypatch.setattr(DiffusionScoreReward, "forward", lambda self, s, a, ns, d: th.zeros(len(s)))
    result = load_quickstart().run(seed=0, progress_bar=False)
    assert result["gap_closed"] < BAR, result
