"""The method on a 2-D toy task: expert and learner densities, the cost, and its fall over training.

    python examples/plot_method.py [--out docs/img/method.png] [--rounds 40]

The expert is a mixture of three Gaussians; the "policy" is a mixture of eight
Gaussians with learnable means and scales, started away from the expert. Each
round runs the loop of ``DiffusionScoreIL`` with the RL step replaced by a few
gradient steps on the policy's parameters (the 2-D points are its "states"):

1. sample learner states and refit the learner score network on the newest
   ones (a sliding window: follow-the-leader), from new weights and a new
   optimiser every round, as ``DiffusionScoreIL``'s refit does;
2. lower the mean cost ``c(x)`` of the policy's samples, the score networks frozen.

The figure shows the cost landscape (blue: expert-like, reward ``-c`` high;
red: where the learner is and the expert is not) with both sets of samples at
the first and the last round, and the mean cost on learner and expert states
per round: their gap estimates the diffusion score divergence and shrinks as
the learner matches the expert. Takes about half a minute on one CPU core.
"""

import argparse
import pathlib
from dataclasses import dataclass
from typing import Callable, List, Tuple

import numpy as np
import torch as th
from torch import nn
from tqdm.auto import tqdm

from sb3_diffusion_il import DiffusionSchedule, ScoreNetwork, diffusion_score_cost
from sb3_diffusion_il.score_net import fit

EXPERT_MODES = th.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 2.0]])
EXPERT_STD = 0.35
LEARNER_START = (3.5, -2.5)
N_LEARNER_COMPONENTS = 8
HIDDEN_SIZES = (128, 128)
BATCH = 512
EXPERT_FIT_STEPS = 4000
LEARNER_FIT_STEPS = 150
POLICY_STEPS = 5
SAMPLES_PER_ROUND = 1024
WINDOW_ROUNDS = 10
COST_TIMESTEPS = 32
GRID_LIMITS = (-4.0, 5.0)


@dataclass
class ToyRun:
    """What the figure shows.

    :param expert_states: the expert's samples, (n, 2)
    :param snapshots: (round, learner samples, cost grid) at the first and last round
    :param costs: per round, the mean cost on learner states and on expert states, (n_rounds, 2)
    """

    expert_states: np.ndarray
    snapshots: List[Tuple[int, np.ndarray, np.ndarray]]
    costs: np.ndarray


def sample_expert(n: int, generator: th.Generator) -> th.Tensor:
    """``n`` expert states from the three-Gaussian mixture."""
    idx = th.randint(0, len(EXPERT_MODES), (n,), generator=generator)
    return EXPERT_MODES[idx] + EXPERT_STD * th.randn(n, 2, generator=generator)


class GaussianMixturePolicy(nn.Module):
    """The toy learner: equal-weight Gaussians whose means and scales are trained.

    :param n_components: number of Gaussians
    :param generator: random source of the initial means
    """

    def __init__(self, n_components: int, generator: th.Generator):
        super().__init__()
        self.means = nn.Parameter(th.tensor(LEARNER_START) + 0.3 * th.randn(n_components, 2, generator=generator))
        self.log_stds = nn.Parameter(th.full((n_components, 2), float(np.log(0.5))))

    def sample(self, n: int, generator: th.Generator) -> th.Tensor:
        """``n`` states, differentiable in the means and scales (reparameterised)."""
        idx = th.randint(0, len(self.means), (n,), generator=generator)
        return self.means[idx] + self.log_stds[idx].exp() * th.randn(n, 2, generator=generator)


def sampler(x: th.Tensor, generator: th.Generator) -> Callable[[int], th.Tensor]:
    """A batch function for `score_net.fit`: rows of ``x`` drawn with replacement."""
    return lambda n: x[th.randint(0, len(x), (n,), generator=generator)]


def new_learner_score(expert: ScoreNetwork) -> ScoreNetwork:
    """A learner score network with new weights, fed states normalised with the expert's statistics."""
    learner = ScoreNetwork(2, HIDDEN_SIZES)
    learner.set_normalization(expert.mean.numpy(), expert.std.numpy())
    return learner


def cost_grid(
    expert: ScoreNetwork, learner: ScoreNetwork, schedule: DiffusionSchedule, generator: th.Generator,
) -> np.ndarray:
    """The cost ``c`` on a square grid over ``GRID_LIMITS``, shape (n, n)."""
    axis = th.linspace(*GRID_LIMITS, 80)
    xx, yy = th.meshgrid(axis, axis, indexing="xy")
    points = th.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    with th.no_grad():
        cost = diffusion_score_cost(expert, learner, schedule, points, COST_TIMESTEPS, generator)
    return cost.reshape(xx.shape).numpy()


def train(n_rounds: int, seed: int) -> ToyRun:
    """Runs the toy loop; returns the snapshots and per-round costs the figure shows."""
    generator = th.Generator().manual_seed(seed)
    th.manual_seed(seed)  # network initialisation, the learner score's every round too
    schedule = DiffusionSchedule(1000)
    expert_states = sample_expert(8192, generator)
    expert = ScoreNetwork(2, HIDDEN_SIZES)
    expert.set_normalization(expert_states.mean(0).numpy(), expert_states.std(0).numpy())
    fit(expert, schedule, sampler(expert_states, generator), th.optim.AdamW(expert.parameters(), lr=1e-3),
        EXPERT_FIT_STEPS, BATCH, generator, progress_bar=True, description="expert score")
    expert.requires_grad_(False)
    policy = GaussianMixturePolicy(N_LEARNER_COMPONENTS, generator)
    policy_opt = th.optim.Adam(policy.parameters(), lr=0.05)

    window: List[th.Tensor] = []
    costs: List[List[float]] = []
    snapshots = []
    for round_ in tqdm(range(n_rounds), desc="round"):
        with th.no_grad():
            window = (window + [policy.sample(SAMPLES_PER_ROUND, generator)])[-WINDOW_ROUNDS:]
        # The fresh refit: new weights and optimiser, fitted on the window of newest states.
        learner = new_learner_score(expert)
        fit(learner, schedule, sampler(th.cat(window), generator), th.optim.AdamW(learner.parameters(), lr=1e-3),
            LEARNER_FIT_STEPS, BATCH, generator)
        with th.no_grad():
            costs.append([
                float(diffusion_score_cost(expert, learner, schedule, x, COST_TIMESTEPS, generator).mean())
                for x in (window[-1], expert_states[:SAMPLES_PER_ROUND])
            ])
        if round_ in (0, n_rounds - 1):
            snapshots.append((round_ + 1, window[-1].numpy(), cost_grid(expert, learner, schedule, generator)))
        # The policy step treats the cost as a fixed reward, as the RL learner does.
        learner.requires_grad_(False)
        for _ in range(POLICY_STEPS):
            loss = diffusion_score_cost(
                expert, learner, schedule, policy.sample(BATCH, generator), COST_TIMESTEPS, generator,
            ).mean()
            policy_opt.zero_grad()
            loss.backward()
            policy_opt.step()
    return ToyRun(expert_states.numpy(), snapshots, np.array(costs))


def plot(run: ToyRun, path: pathlib.Path) -> None:
    """Two cost landscapes with samples, and the per-round mean costs, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), layout="constrained")
    expert_states = run.expert_states[:600]
    limit = max(np.abs(grid).max() for _, _, grid in run.snapshots)
    for ax, (round_, learner_states, grid) in zip(axes, run.snapshots):
        image = ax.imshow(grid, origin="lower", extent=GRID_LIMITS * 2, cmap="coolwarm", vmin=-limit, vmax=limit)
        ax.scatter(*expert_states.T, s=3, c="navy", alpha=0.5, label="expert states")
        ax.scatter(*learner_states[:600].T, s=3, c="darkorange", alpha=0.6, label="learner states")
        ax.set(title=f"round {round_}: cost c(x) and states", xlim=GRID_LIMITS, ylim=GRID_LIMITS)
        ax.legend(loc="lower left", fontsize=7, markerscale=3)
    fig.colorbar(image, ax=axes[:2].tolist(), shrink=0.85, label="c(x)  (reward = -c)")
    costs = run.costs
    rounds = np.arange(1, len(costs) + 1)
    axes[2].plot(rounds, costs[:, 0], color="darkorange", label="mean cost on learner states")
    axes[2].plot(rounds, costs[:, 1], color="navy", label="mean cost on expert states")
    axes[2].axhline(0.0, color="k", lw=0.8)
    axes[2].set(title="cost over training", xlabel="round")
    axes[2].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parents[1] / "docs/img/method.png")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(1)  # small networks: more threads only add contention
    plot(train(args.rounds, args.seed), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
