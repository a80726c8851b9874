"""The diffusion score cost and the reward ``r = -c`` it defines.

For a feature ``x_0`` (normalised with the expert's statistics)::

    c(x_0) = E_{t, eps} [ ||eps_E(x_t, t) - eps||^2 - ||eps_L(x_t, t) - eps||^2 ]

with the *same* ``t`` and ``eps`` fed to the expert score ``eps_E`` and the
learner score ``eps_L``. Averaged over the learner's states this estimates the
diffusion score divergence between learner and expert; the difference of
losses (rather than ``||eps_E - eps_L||^2``) has the same mean when ``eps_L`` is
the learner's optimal denoiser, and a lower variance. Errors are averaged over
coordinates, so costs compare across tasks of different dimension.

The reward estimates ``c`` from a few timesteps per state, chosen to spend the
network evaluations where the estimate's variance is:

- antithetic noise: each timestep is scored with ``eps`` and ``-eps``, which
  cancels the odd-order noise terms (nearly all the noise at low ``t``);
- importance sampling: timesteps are drawn from a proposal proportional to how
  much the cost varies at each ``t``, profiled on learner states once a round,
  and weighted back to the uniform average over ``t``;
- one set of timesteps per round (a randomly shifted grid in the proposal's
  quantiles) for every state, so the states a learner compares share their
  quadrature; the shift changes every round, so the estimate stays unbiased.
"""

import contextlib
from typing import Iterator, Optional, Sequence, Tuple, Union

import gymnasium as gym
import numpy as np
import torch as th
from imitation.rewards import reward_nets
from imitation.rewards.reward_nets import RewardNet
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_diffusion_il import absorbing, data, flatten
from sb3_diffusion_il.diffusion import DiffusionSchedule
from sb3_diffusion_il.score_net import ScoreNetwork, denoising_errors

# The proposal mixes the per-timestep noise of antithetic pairs with this weight
# of the spread of the cost across states (which the shared timesteps must
# resolve), plus a uniform floor that keeps every timestep possible. Chosen on
# the networks of benchmarks/fidelity.py with benchmarks/fidelity_variants.py.
SPREAD_WEIGHT = 0.3
UNIFORM_FLOOR = 0.01
# The proposal is profiled on this many states at this many bands of timesteps.
PROFILE_STATES = 128
PROFILE_BANDS = 50
# Noised copies scored per network call: larger batches spill the hidden
# activations out of the CPU cache and run several times slower per row.
CHUNK_ROWS = 2048
# Arithmetic of the score networks in the reward's estimate. "auto" takes
# bfloat16 where the device computes it natively: the estimate's Monte Carlo
# noise dwarfs bfloat16's rounding (benchmarks/fidelity.py --precision).
PRECISIONS = ("auto", "float32", "bfloat16")
# Below this many states a call is mostly fixed overhead, which bfloat16's
# casts add to (benchmarks/cost_speed.py, us per state in float32 / bfloat16:
# 1 state 377 / 598, 32 states 37 / 43, 256 states 77 / 26): the reward-wrapped
# env's one state per step stays in float32.
BFLOAT16_MIN_STATES = 64
# Seed of the estimate's noise when the reward is evaluated outside training.
EVALUATION_SEED = 0


def native_bfloat16(device: th.device) -> bool:
    """Whether ``device`` does bfloat16 matrix products in hardware (elsewhere they are slower than float32)."""
    if device.type == "cuda":
        return th.cuda.is_bf16_supported()
    if device.type == "cpu":
        # torch's own probes (private, hence getattr): AVX512-BF16 or AMX instructions.
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(th.cpu, name, lambda: False)() for name in probes)
    return False


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: choose one of {list(PRECISIONS)}.")


def diffusion_score_cost(
    expert: ScoreNetwork,
    learner: ScoreNetwork,
    schedule: DiffusionSchedule,
    x: th.Tensor,
    n_timesteps: int = 16,
    generator: Optional[th.Generator] = None,
    timesteps: Optional[th.Tensor] = None,
    weights: Optional[th.Tensor] = None,
    antithetic: bool = False,
) -> th.Tensor:
    """Per-sample cost of raw features ``x`` (n, d).

    By default each sample gets ``n_timesteps`` stratified uniform timesteps,
    one noise draw each.

    :param timesteps: timesteps to use instead of stratified draws: ``(k,)`` shared
        by all samples, e.g. the even grid of a reference estimate, or ``(n, k)``
    :param weights: importance weights of ``timesteps`` (same shape), so that the
        weighted mean estimates the uniform average over ``t``
    :param antithetic: score each timestep with the noise pair ``eps``, ``-eps``
        (twice the network evaluations)
    :return: costs, shape ``(n,)``; lower is more expert-like
    """
    if timesteps is None:
        timesteps = schedule.stratified_timesteps(len(x), n_timesteps, generator)
    gaps = loss_gaps(expert, learner, schedule, x, timesteps, generator, antithetic)
    if weights is not None:
        gaps = gaps * th.as_tensor(weights, device=x.device).expand_as(gaps)
    return gaps.mean(dim=1)


def loss_gaps(
    expert: ScoreNetwork,
    learner: ScoreNetwork,
    schedule: DiffusionSchedule,
    x: th.Tensor,
    timesteps: th.Tensor,
    generator: Optional[th.Generator] = None,
    antithetic: bool = False,
) -> th.Tensor:
    """Expert minus learner denoising error of each sample at each timestep, ``(n, k)``.

    :param timesteps: ``(k,)`` shared by all samples, or ``(n, k)``
    """
    n = len(x)
    t = th.as_tensor(timesteps, device=x.device).expand(n, -1)
    k = t.shape[1]
    x0 = expert.normalize(x).repeat_interleave(k, dim=0)
    t = t.reshape(-1)
    eps = th.randn(x0.shape, generator=generator, device=x0.device)
    if antithetic:
        # One pass over both signs: x0, t stacked twice, the noise with either sign.
        x0, t, eps = th.cat([x0, x0]), th.cat([t, t]), th.cat([eps, -eps])
    gaps = th.cat([
        _gap(expert, learner, schedule, x0[i : i + CHUNK_ROWS], t[i : i + CHUNK_ROWS], eps[i : i + CHUNK_ROWS])
        for i in range(0, len(x0), CHUNK_ROWS)
    ])
    if antithetic:
        gaps = 0.5 * (gaps[: n * k] + gaps[n * k :])
    return gaps.reshape(n, k)


def _gap(
    expert: ScoreNetwork, learner: ScoreNetwork, schedule: DiffusionSchedule, x0: th.Tensor, t: th.Tensor,
    eps: th.Tensor,
) -> th.Tensor:
    x_t = schedule.noise(x0, t, eps)
    return denoising_errors(expert, x_t, t, eps) - denoising_errors(learner, x_t, t, eps)


def timestep_proposal(
    expert: ScoreNetwork,
    learner: ScoreNetwork,
    schedule: DiffusionSchedule,
    x: th.Tensor,
    n_bands: int = PROFILE_BANDS,
    generator: Optional[th.Generator] = None,
    spread_weight: float = SPREAD_WEIGHT,
) -> th.Tensor:
    """A density over timesteps ``(T,)`` for importance sampling the cost of states like ``x``.

    At the middle of each of ``n_bands`` bands of ``t`` it measures, with two
    antithetic pairs per state, the noise of a pair's estimate and the spread of
    the cost across the states; the density is proportional to their mix
    (``spread_weight`` of the spread's share).
    """
    T = schedule.n_steps
    edges = th.linspace(0, T, min(n_bands, T) + 1, device=x.device).long()
    mids = (edges[:-1] + edges[1:]) // 2
    first, second = (loss_gaps(expert, learner, schedule, x, mids, generator, antithetic=True) for _ in range(2))
    noise = (first - second).pow(2).mean(dim=0).div(2).sqrt()
    spread = first.std(dim=0)
    density = _normalized(noise) + spread_weight * _normalized(spread) + UNIFORM_FLOOR / len(mids)
    return density.repeat_interleave(edges.diff())


def _normalized(v: th.Tensor) -> th.Tensor:
    """``v`` scaled to sum 1; uniform where it is all zero (identical networks)."""
    total = v.sum()
    return v / total if total > 0 else th.full_like(v, 1.0 / len(v))


def quantile_timesteps(
    proposal: th.Tensor, k: int, generator: Optional[th.Generator] = None,
) -> Tuple[th.Tensor, th.Tensor]:
    """``k`` timesteps on a randomly shifted grid in the quantiles of ``proposal``, and their weights.

    Over the shift, the weighted mean of any function of ``t`` is unbiased for its
    uniform average over ``t``.
    """
    cdf = th.cumsum(proposal, 0) / proposal.sum()
    shift = th.rand((), generator=generator, device=proposal.device)
    t = th.searchsorted(cdf, (th.arange(k, device=proposal.device) + shift) / k).clamp_(max=len(proposal) - 1)
    return t, proposal.mean() / proposal[t]


def saturation_scale(learner_costs: th.Tensor, expert_costs: th.Tensor, quantile: float) -> float:
    """The cost scale ``s`` of the saturated reward ``tanh(-c / s)``.

    ``s`` is the ``quantile`` of the learner's costs, so that states much costlier
    than the learner's better ones all get nearly the same reward, as a saturated
    discriminator gives them; it is at least the spread of the cost across the
    expert's own states, which is the estimate's noise, so that a learner that
    matches the expert is not rewarded by the sign of that noise.
    """
    return max(float(th.quantile(learner_costs.float(), quantile)), float(expert_costs.float().std()), 1e-8)


class DiffusionScoreReward(RewardNet):
    """imitation ``RewardNet`` whose reward is ``-c`` of a transition's feature.

    Usable wherever imitation takes a reward net, e.g.
    ``RewardVecEnvWrapper(venv, reward.predict_processed)``. The timesteps of the
    estimate are fixed until `resample_timesteps` is called (once a round, by the
    trainer); until a proposal is profiled they are a shifted even grid.

    :param observation_space: the environment's observation space
    :param action_space: the environment's action space
    :param expert: the expert score network (fitted, frozen)
    :param learner: the learner score network
    :param schedule: the diffusion schedule both networks were fitted with
    :param conditioning: which feature of a transition is diffused, see `data.features`
    :param n_timesteps: timesteps per sample in the cost estimate, each scored
        with an antithetic noise pair
    :param generator: random source of timesteps and noise (for reproducible runs)
    :param precision: arithmetic of the networks in the estimate, one of
        ``PRECISIONS``; ``"auto"`` is bfloat16 where the device does it natively
    :param state_coordinates: the coordinates of a (flattened) state that are
        diffused, see `data.features`; None: all
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        expert: ScoreNetwork,
        learner: ScoreNetwork,
        schedule: DiffusionSchedule,
        conditioning: str = "state",
        n_timesteps: int = 12,
        generator: Optional[th.Generator] = None,
        precision: str = "auto",
        state_coordinates: Optional[Sequence[int]] = None,
    ):
        super().__init__(observation_space, action_space, normalize_images=False)
        data.check_conditioning(conditioning)
        check_precision(precision)
        if n_timesteps < 1:
            raise ValueError(f"n_timesteps={n_timesteps} must be at least 1.")
        self.expert = expert
        self.learner = learner
        self.schedule = schedule
        self.conditioning = conditioning
        self.state_coordinates = state_coordinates
        self.n_timesteps = n_timesteps
        self.generator = generator
        device = schedule.signal_scale.device
        self.precision = precision
        self.bfloat16 = precision == "bfloat16" or (precision == "auto" and native_bfloat16(device))
        self.register_buffer("proposal", th.ones(schedule.n_steps, device=device))
        self.register_buffer("timesteps", th.zeros(n_timesteps, dtype=th.long, device=device))
        self.register_buffer("weights", th.ones(n_timesteps, device=device))
        self.resample_timesteps()
        self.eval()  # nothing here depends on the mode; see predict_th

    # imitation's versions walk every parameter, on every call of `preprocess`.
    @property
    def device(self) -> th.device:
        return self.proposal.device

    @property
    def dtype(self) -> th.dtype:
        return self.proposal.dtype

    @property
    def evaluations_per_sample(self) -> int:
        """Score-network evaluations spent on each sample's cost (both networks, both signs of the noise)."""
        return 4 * self.n_timesteps

    @property
    def evaluations_per_profile(self) -> int:
        """Score-network evaluations of one proposal profile (`resample_timesteps` with states), per round.

        Two antithetic pairs through both networks, per profiled state and band of timesteps.
        """
        return PROFILE_STATES * min(PROFILE_BANDS, self.schedule.n_steps) * 2 * 2 * 2

    def resample_timesteps(self, states: Optional[th.Tensor] = None) -> None:
        """Draws the timesteps of the estimate anew, first profiling the proposal on ``states`` if given."""
        if states is not None:
            with th.no_grad(), self._arithmetic(len(states)):
                self.proposal.copy_(timestep_proposal(self.expert, self.learner, self.schedule, states,
                                                      generator=self.generator))
        timesteps, weights = quantile_timesteps(self.proposal, self.n_timesteps, self.generator)
        self.timesteps.copy_(timesteps)
        self.weights.copy_(weights)

    @contextlib.contextmanager
    def drawing_from(self, generator: th.Generator) -> Iterator[None]:
        """The estimate's draws (timesteps, noise) from ``generator`` for the block."""
        saved, self.generator = self.generator, generator
        try:
            yield
        finally:
            self.generator = saved

    def cost(self, x: th.Tensor) -> th.Tensor:
        """Per-sample cost of raw features ``x`` (float32, whatever the networks' arithmetic)."""
        with self._arithmetic(len(x)):
            return diffusion_score_cost(
                self.expert, self.learner, self.schedule, x, generator=self.generator,
                timesteps=self.timesteps, weights=self.weights, antithetic=True,
            ).float()

    def _arithmetic(self, n_states: int) -> th.autocast:
        return th.autocast(self.device.type, dtype=th.bfloat16,
                           enabled=self.bfloat16 and n_states >= BFLOAT16_MIN_STATES)

    def preprocess(self, state, action, next_state, done) -> Tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """Transitions as flat float tensors of their spaces (`flatten`: imitation's
        one-hot codes for discrete spaces, and Dict observations, which its nets refuse)."""
        return (
            flatten.flatten(self.observation_space, state, self.device),
            flatten.flatten(self.action_space, action, self.device),
            flatten.flatten(self.observation_space, next_state, self.device),
            th.as_tensor(done, device=self.device),
        )

    def forward(self, state: th.Tensor, action: th.Tensor, next_state: th.Tensor, done: th.Tensor) -> th.Tensor:
        with th.no_grad():
            return -self.cost(data.features(self.conditioning, state, action, next_state, self.state_coordinates))

    def predict_th(self, state, action, next_state, done) -> th.Tensor:
        """imitation's ``predict_th`` without its switch to eval mode and back.

        The switch walks every submodule, and a reward-wrapped env calls this at
        every step; no layer here behaves differently in training mode.
        """
        return self(*self.preprocess(state, action, next_state, done))


def reward_std_for(gen_algo: BaseAlgorithm, reward_std: Union[float, str, None] = "auto") -> Optional[float]:
    """The scale of the reward ``gen_algo`` trains on: ``reward_std``, where ``"auto"`` is the
    learner's entropy coefficient (temperature) if it has one, else 1.0.

    With rewards much smaller than SAC's temperature the policy stays near-random
    for thousands of steps (Pendulum-v1: std 0.1 under SB3's initial temperature
    of 1.0, ``docs/settings.md``); PPO normalises advantages, and TD3, DDPG and
    DQN explore by fixed noise, so for them only the value scale changes.
    """
    if reward_std != "auto":
        return reward_std
    if not isinstance(gen_algo, OffPolicyAlgorithm):
        return 1.0
    if getattr(gen_algo, "log_ent_coef", None) is not None:  # ent_coef="auto..."
        return float(th.exp(gen_algo.log_ent_coef.detach()).item())
    if getattr(gen_algo, "ent_coef_tensor", None) is not None:  # a fixed ent_coef
        return float(gen_algo.ent_coef_tensor.item())
    return 1.0


class TrainingReward(reward_nets.ForwardWrapper):
    """The reward the learner trains on, one imitation ``RewardNet``: ``-c`` saturated and scaled.

    Its value is ``tanh(-c / s) * std``: ``s`` (`new_round`) is the ``saturation``
    quantile of the cost on the learner's newest states, at least the spread of
    the cost over the expert's, so that states far costlier than the learner's
    better ones, e.g. of a fallen pole, all get nearly the same reward, as under a
    saturated discriminator (`saturation_scale`); ``std`` puts it on the learner's
    scale. ``venv_wrapped`` pays ``predict_processed``; relabelled minibatches get
    the same reward, each standardised to ``std`` (`minibatch`), as the reference does.

    :param base: the cost estimate
    :param saturation: the quantile that sets ``s``; None: the plain ``-c``
    :param std: the reward's scale; None: none
    """

    def __init__(self, base: DiffusionScoreReward, saturation: Optional[float], std: Optional[float]):
        super().__init__(base)
        self.saturation, self.std = saturation, std
        self.scale = 1.0
        self.eval()  # nothing here depends on the mode; see predict_th

    def forward(self, state: th.Tensor, action: th.Tensor, next_state: th.Tensor, done: th.Tensor) -> th.Tensor:
        return self.of_negative_cost(self.base(state, action, next_state, done))

    def of_negative_cost(self, rewards: th.Tensor) -> th.Tensor:
        """The reward of ``-c``."""
        if self.saturation is not None:
            rewards = th.tanh(rewards / self.scale)
        return rewards if self.std is None else rewards * self.std

    def cost_of(self, rewards: th.Tensor) -> th.Tensor:
        """The cost ``c`` of rewards (`of_negative_cost`'s inverse; a cost beyond float
        precision of saturation comes back as a large finite one)."""
        if self.std is not None:
            rewards = rewards / self.std
        if self.saturation is not None:
            rewards = th.atanh(rewards.clamp(-1 + 1e-6, 1 - 1e-6)) * self.scale
        return -rewards

    def minibatch(self, rewards: th.Tensor, ended: Optional[th.Tensor] = None, stay: Optional[th.Tensor] = None,
                  gamma: float = 0.99) -> th.Tensor:
        """A relabelled minibatch's rewards ``(n, 1)``, standardised to mean 0 and ``std``.

        :param ended: which transitions ended their episode by termination, ``(n,)`` bools;
            each gets the worth of staying absorbed forever after
            (`sb3_diffusion_il.absorbing`), its reward ``stay`` (a scalar)
            standardised alike and discounted with ``gamma``
        """
        mean, scale = (0.0, 1.0) if self.std is None else (rewards.mean(), rewards.std(unbiased=False) + 1e-8)
        standardized = (rewards - mean) / scale * (self.std or 1.0)
        if ended is not None and ended.any():
            standardized[ended] += absorbing.worth_after((stay - mean) / scale * (self.std or 1.0), gamma)
        return standardized

    def new_round(self, profiled: Optional[th.Tensor], learner: th.Tensor, expert: th.Tensor) -> None:
        """The round's cost timesteps, profiled on the learner features ``profiled``
        (None: none yet), and its saturation scale, from the costs of the learner's
        newest features ``learner`` and of the expert's ``expert``."""
        self.base.resample_timesteps(profiled)
        if self.saturation is not None:
            with th.no_grad():
                costs = [self.base.cost(x) for x in (learner, expert)]
            self.scale = saturation_scale(*costs, self.saturation)

    def predict_th(self, state, action, next_state, done) -> th.Tensor:
        """imitation's ``predict_th`` without its switch to eval mode and back (see the base's)."""
        return self(*self.preprocess(state, action, next_state, done))

    def predict_processed(self, state, action, next_state, done, training: bool = False, **kwargs) -> np.ndarray:
        """The rewards of a batch of transitions, as imitation's ``RewardNet`` gives them.

        :param training: draw the estimate's noise from the trainer's generator, as the
            rewards ``venv_wrapped`` pays do. By default (outside training) it comes from a
            generator of its own, seeded alike at every call, so that evaluating the reward
            gives the same values for the same inputs and never changes what training draws next
        """
        if training:
            return super().predict_processed(state, action, next_state, done, **kwargs)
        with self.base.drawing_from(th.Generator(device=self.device).manual_seed(EVALUATION_SEED)):
            return super().predict_processed(state, action, next_state, done, **kwargs)
