"""The benchmark tasks: how each one's expert is trained and how its episodes end.

The MuJoCo tasks are imitation's fixed-horizon ``seals/*`` versions, and
gymnasium's ``InvertedPendulum-v4``, ``Hopper-v4`` and ``Walker2d-v4``, whose
episodes end early (``sb3_diffusion_il.absorbing``).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import gymnasium as gym
from imitation.policies.base import NormalizeFeaturesExtractor
from torch import nn


@dataclass(frozen=True)
class Task:
    """A task and the expert made for it.

    :param env_id: the gymnasium id
    :param expert_timesteps: the expert's training budget in env steps
    :param expert_kwargs: the expert learner's settings, beyond SB3's defaults
    :param eval_every: env steps between the expert's evaluations (its learning curve)
    :param fixed_horizon: False when episodes can end early; imitation trainers then
        need ``allow_variable_horizon=True``
    :param expert_algo: the expert's SB3 learner, one of ``EXPERT_ALGOS``
    :param expert_n_envs: environments the expert trains on side by side
    :param expert_normalize: the expert trains on SB3's ``VecNormalize`` (rewards discounted
        with the learner's ``gamma``): True normalises observations and rewards, as
        rl-baselines3-zoo's ``normalize: true``; a mapping gives ``VecNormalize``'s
        settings (``norm_obs``, ``norm_reward``), as the zoo's ``normalize=dict(...)``;
        its demonstrations are recorded in the env's raw units
    :param expert_env_kwargs: settings of the env the expert trains on, beyond the
        task's; its evaluations and demonstrations are on the task as registered
    :param expert_target: training stops early once the expert is competent and
        steady: every evaluation over the last tenth of its steps so far at least
        this return and within ``FLAT`` of the last (None: the whole budget)
    :param recorded_from: the task whose bundled expert episodes this one's demonstrations
        are made from (`ended_early`), instead of an expert of its own
    """

    env_id: str
    expert_timesteps: int
    expert_kwargs: Mapping[str, Any] = field(default_factory=dict)
    eval_every: int = 10_000
    fixed_horizon: bool = True
    expert_algo: str = "SAC"
    expert_n_envs: int = 1
    expert_normalize: Union[bool, Mapping[str, bool]] = False
    expert_env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    expert_target: Optional[float] = None
    recorded_from: Optional[str] = None

    def __post_init__(self):
        if self.expert_algo not in EXPERT_ALGOS:
            raise ValueError(f"expert_algo={self.expert_algo!r} is not one of {EXPERT_ALGOS}.")


EXPERT_ALGOS = ("SAC", "PPO")
# How far from their mean the evaluations of a steady expert's last tenth of
# training may be, and how many there must be.
FLAT = 0.1
STEADY_EVALUATIONS = 5


@dataclass(frozen=True)
class AnnealedLR:
    """A learning rate constant at ``initial``, then falling linearly to zero over the
    last ``fraction`` of the budget (an SB3 schedule of the progress remaining), so
    that the final stretch of training settles the policy it ends with."""

    initial: float
    fraction: float

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * min(1.0, progress_remaining / self.fraction)


def steady_at(curve: Sequence[Sequence[float]], target: float) -> bool:
    """Whether a learning curve ``[[steps, mean, std], ...]`` ends steady at ``target`` or
    above: at least ``STEADY_EVALUATIONS`` evaluations over its last tenth of steps,
    every one at least ``target`` and within ``FLAT`` of the last (the final policy's,
    which the demonstrations record: tests/test_experts.py holds them to the same)."""
    last = [mean for steps, mean, _ in curve if steps >= 0.9 * curve[-1][0]] if curve else []
    if len(last) < STEADY_EVALUATIONS:
        return False
    final = last[-1]
    return min(last) >= target and all(abs(mean - final) <= FLAT * abs(final) for mean in last)


# rl-baselines3-zoo's PPO settings for CartPole (8 envs).
_ZOO_CARTPOLE_PPO = dict(
    n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=1e-3,
    clip_range=0.2,
)

# The Hopper and Walker2d experts are SB3's PPO defaults (the OpenAI
# baselines MuJoCo settings) on VecNormalize, trained with the fall
# ending the episode (as gymnasium's Hopper-v4 and Walker2d-v4 do; seals' versions
# keep x in the observation and go on to the horizon) and recorded on seals' task.
# Measured on seals/Hopper-v1 with rl-baselines3-zoo's tuned Hopper-v3 PPO: without
# the fall ending the episode it stood still (~1,000) and then fell (190 by 225k
# steps); with it, it stood still from 40k to 512k steps (1,007-1,019). SB3's PPO
# defaults held 2,844-3,197 from 737k to 983k steps and fell to 924 in the last
# 18k; with baselines' learning rate falling to 0 they peaked at ~3,000 (574k-635k)
# and ended standing (1,007). Hence training stops once the expert is competent
# and steady (``expert_target``, the bar of tests/test_experts.py).
# Walker2d: rl-baselines3-zoo's tuned Walker2d-v3 PPO swung between
# 1,932 and 3,379 over 860k-962k steps at its constant rate, and between 1,355
# and 2,702 over 737k-799k with it falling to 0; SB3's defaults on one env
# swung between 1,760 and 4,857 over 1.8M-2M steps. On 4 envs (4x the samples
# per update) they were steady at 3,966-4,582 by 1.45M.
# Ant: SB3's PPO defaults (VecNormalize, fall ending the episode) stood still
# (653-1,026 over 1.2M-1.43M steps; on 4 envs 722-977 to 663k), with the control
# cost cut to 0.1 in training they flailed (-300 to 373 over 565k-811k on seals'
# reward), and rl-baselines3-zoo's SAC stood still (631-951 from 90k to 220k
# steps). So Ant's expert is trained as imitation trained its own seals experts:
# PPO with rl-baselines3-zoo's seals settings (its ``seals_hyperparameters``
# branch, ``hyperparams/python/ppo.py``): 1 env, rewards normalised, observations
# normalised inside the policy by imitation's ``NormalizeFeaturesExtractor``. With
# the zoo's constant learning rate its evaluations swung (2,092 at 1M steps,
# 1,407-2,757 from 1.5M to 3M), so the rate falls to zero over the last sixth.
_FALL_ENDS_EPISODE = {"terminate_when_unhealthy": True}
_SEALS_ANT_PPO = dict(
    n_steps=2048, batch_size=16, n_epochs=10, gamma=0.995, gae_lambda=0.8,
    learning_rate=AnnealedLR(1.7959211641976886e-4, 1 / 6), clip_range=0.3, ent_coef=3.1441389214159857e-6,
    vf_coef=0.4351450387648799, max_grad_norm=0.9,
    policy_kwargs=dict(activation_fn=nn.Tanh, net_arch=dict(pi=[64, 64], vf=[64, 64]),
                       features_extractor_class=NormalizeFeaturesExtractor),
)
# HalfCheetah's expert takes rl-baselines3-zoo's SAC settings (10k random steps first).
_ZOO_SAC = {"learning_starts": 10_000}
TASKS: Dict[str, Task] = {
    task.env_id: task
    for task in (
        Task("seals/CartPole-v0", 100_000, _ZOO_CARTPOLE_PPO, eval_every=10_000, expert_algo="PPO",
             expert_n_envs=8),
        Task("Pendulum-v1", 20_000, {"learning_rate": 1e-3}, eval_every=2_000),
        Task("InvertedPendulum-v4", 30_000, {"learning_rate": 1e-3}, eval_every=2_000, fixed_horizon=False),
        Task("seals/HalfCheetah-v1", 200_000, _ZOO_SAC),
        Task("seals/Hopper-v1", 1_000_000, {}, eval_every=20_480, expert_algo="PPO",
             expert_normalize=True, expert_env_kwargs=_FALL_ENDS_EPISODE, expert_target=2_500),
        Task("seals/Walker2d-v1", 3_000_000, {}, eval_every=20_480, expert_algo="PPO", expert_n_envs=4,
             expert_normalize=True, expert_env_kwargs=_FALL_ENDS_EPISODE, expert_target=3_000),
        Task("seals/Ant-v1", 3_600_000, _SEALS_ANT_PPO, eval_every=20_480, expert_algo="PPO",
             expert_normalize=dict(norm_obs=False, norm_reward=True), expert_target=2_000),
        # gymnasium's own versions, whose episodes end when the body falls.
        Task("Hopper-v4", 0, fixed_horizon=False, recorded_from="seals/Hopper-v1"),
        Task("Walker2d-v4", 0, fixed_horizon=False, recorded_from="seals/Walker2d-v1"),
    )
}


def get_task(env_id: str) -> Task:
    """The registered task, or for another id SB3's defaults with a 1M budget: PPO where
    the actions are discrete (``Discrete``, ``MultiDiscrete``, ``MultiBinary``), SAC otherwise."""
    if env_id in TASKS:
        return TASKS[env_id]
    if env_id.startswith("seals/"):
        import seals  # noqa: F401  (registers the seals/* ids)
    gym.spec(env_id)  # an unknown id raises gymnasium's error, listing close names
    env = gym.make(env_id)
    discrete = isinstance(env.action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary))
    env.close()
    return Task(env_id, 1_000_000, fixed_horizon=False, expert_algo="PPO" if discrete else "SAC")
