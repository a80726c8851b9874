"""The diffusion score cost and the reward ``r = -c`` it defines.

For a feature ``x_0`` (normalised with the expert's statistics)::

    c(x_0) = E_{t, eps} [ ||eps_E(x_t, t) - eps||^2 - ||eps_L(x_t, t) - eps||^2 ]

with the *same* ``t`` and ``eps`` fed to the expert score ``eps_E`` and the
learner score ``eps_L``. Averaged over the learner's states this estimates the
diffusion score divergence between learner and expert; the difference of
losses (rather than ``||eps_E - eps_L||^2``) has the same mean when ``eps_L`` is
the learner's optimal denoiser, and a lower variance. Errors are averaged over
coordinates, so costs compare across tasks of different dimension.
"""

from typing import Optional

import gymnasium as gym
import torch as th
from imitation.rewards.reward_nets import RewardNet

from sb3_diffusion_il import data
from sb3_diffusion_il.diffusion import DiffusionSchedule
from sb3_diffusion_il.score_net import ScoreNetwork, denoising_errors


def diffusion_score_cost(
    expert: ScoreNetwork,
    learner: ScoreNetwork,
    schedule: DiffusionSchedule,
    x: th.Tensor,
    n_timesteps: int,
    generator: Optional[th.Generator] = None,
    timesteps: Optional[th.Tensor] = None,
) -> th.Tensor:
    """Per-sample cost of raw features ``x`` (n, d), from ``n_timesteps`` stratified timesteps.

    :param timesteps: fixed timesteps ``(k,)`` used for every sample instead of
        the stratified draws (``n_timesteps`` is then ignored), e.g. the even grid
        of a reference estimate
    :return: costs, shape ``(n,)``; lower is more expert-like
    """
    n = len(x)
    if timesteps is None:
        t = schedule.stratified_timesteps(n, n_timesteps, generator)
    else:
        t = th.as_tensor(timesteps, device=x.device).expand(n, -1)
    k = t.shape[1]
    x0 = expert.normalize(x).repeat_interleave(k, dim=0)
    t = t.reshape(-1)
    eps = th.randn(x0.shape, generator=generator, device=x0.device)
    x_t = schedule.noise(x0, t, eps)
    gap = denoising_errors(expert, x_t, t, eps) - denoising_errors(learner, x_t, t, eps)
    return gap.reshape(n, k).mean(dim=1)


def standardize(rewards: th.Tensor, std: float) -> th.Tensor:
    """Shifts and scales a batch of rewards to mean 0 and standard deviation ``std``."""
    return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-8) * std


class DiffusionScoreReward(RewardNet):
    """imitation ``RewardNet`` whose reward is ``-c`` of a transition's feature.

    Usable wherever imitation takes a reward net, e.g.
    ``RewardVecEnvWrapper(venv, reward.predict_processed)``.

    :param observation_space: the environment's observation space
    :param action_space: the environment's action space
    :param expert: the expert score network (fitted, frozen)
    :param learner: the learner score network
    :param schedule: the diffusion schedule both networks were fitted with
    :param conditioning: which feature of a transition is diffused, see `data.features`
    :param n_timesteps: timesteps per sample in the cost estimate
    :param generator: random source of timesteps and noise (for reproducible runs)
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        expert: ScoreNetwork,
        learner: ScoreNetwork,
        schedule: DiffusionSchedule,
        conditioning: str = "state",
        n_timesteps: int = 16,
        generator: Optional[th.Generator] = None,
    ):
        super().__init__(observation_space, action_space, normalize_images=False)
        data.check_conditioning(conditioning)
        if n_timesteps < 1:
            raise ValueError(f"n_timesteps={n_timesteps} must be at least 1.")
        self.expert = expert
        self.learner = learner
        self.schedule = schedule
        self.conditioning = conditioning
        self.n_timesteps = n_timesteps
        self.generator = generator

    @property
    def evaluations_per_sample(self) -> int:
        """Score-network evaluations spent on each sample's cost (both networks)."""
        return 2 * self.n_timesteps

    def cost(self, x: th.Tensor) -> th.Tensor:
        """Per-sample cost of raw features ``x``."""
        return diffusion_score_cost(self.expert, self.learner, self.schedule, x, self.n_timesteps, self.generator)

    def forward(self, state: th.Tensor, action: th.Tensor, next_state: th.Tensor, done: th.Tensor) -> th.Tensor:
        with th.no_grad():
            return -self.cost(data.features(self.conditioning, state, action, next_state))
