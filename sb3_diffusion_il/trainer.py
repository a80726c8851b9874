"""``DiffusionScoreIL``: imitation by diffusion score matching, a drop-in for GAIL/AIRL."""

import contextlib
import time
import warnings
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch as th
from gymnasium import spaces
from imitation.algorithms import base
from imitation.data import types, wrappers
from imitation.rewards import reward_wrapper
from imitation.util import logger as imit_logger
from imitation.util import util
from stable_baselines3.common import base_class, on_policy_algorithm, policies, vec_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from tqdm.auto import tqdm

from sb3_diffusion_il import checkpoint, data, flatten, positions, relabel, score_net
from sb3_diffusion_il.buffers import LearnerStateBuffer
from sb3_diffusion_il.cost import PROFILE_STATES, DiffusionScoreReward, check_precision, saturation_scale, standardize
from sb3_diffusion_il.diffusion import DiffusionSchedule
from sb3_diffusion_il.score_net import ScoreNetwork

# Rounds of an off-policy learner when `gen_train_timesteps` is not given: the
# reference refits the learner score every 1,001 env steps.
DEFAULT_OFF_POLICY_ROUND = 1000
# States scored per round to log the mean cost (the divergence estimate).
N_COST_LOG_SAMPLES = 1024
HELDOUT_FRACTION = 0.1
# relabel_refresh="auto" recomputes the cost of one stored transition per this
# many replay draws of a round (benchmarks/overhead.py measures what it costs).
AUTO_REFRESH_DRAWS = 4
REWARD_NORMALIZATIONS = ("mean_std", "robust")
LEARNER_REFITS = ("warm", "fresh")
SATURATION_STATES = ("newest", "buffer")
# What drop_state_coordinates may name instead of indices.
UNBOUNDED_POSITIONS = "unbounded_positions"
# Demonstration values beyond this, where the observation space is unbounded, draw a warning.
HUGE_OBSERVATION = 1e6


class DiffusionScoreIL(base.DemonstrationAlgorithm[types.Transitions]):
    """Score-matching imitation learning (SMILING) around any Stable-Baselines3 learner.

    An expert score network is fitted once on the demonstrations; a learner score
    network is refitted every round on the learner's own states. The learner is
    trained with reward ``-c``, where ``c`` compares how well the two networks
    denoise a noised copy of each state (see `sb3_diffusion_il.cost`).
    Off-policy learners (SAC, TD3, DDPG, TQC) have every replay minibatch
    relabelled with the current reward; on-policy learners (PPO) get it from
    ``venv_wrapped``, imitation's reward-wrapping VecEnv.

    The arguments shared with ``imitation.algorithms.adversarial.AdversarialTrainer``
    mean the same; instead of ``reward_net`` this takes score networks and their
    training settings.

    :param demonstrations: expert data: a sequence of ``Trajectory``,
        ``Transitions``, ``TransitionsMinimal``, an iterable of transition dicts, or
        an array of states ``(n, obs_dim)``
    :param demo_batch_size: batch size of every score-network gradient step
    :param venv: the vectorised environment to train in
    :param gen_algo: the SB3 learner; its environment is set to ``venv_train`` and
        its logger to this trainer's
    :param conditioning: what is diffused: ``"state"`` (needs no expert actions),
        ``"state_action"`` or ``"state_next_state"``
    :param drop_state_coordinates: coordinates of the (flattened) observation left
        out of what is diffused, e.g. an absolute position along which the expert's
        states spread (seals' MuJoCo tasks keep x as coordinate 0); the learner's
        policy still sees them. ``"unbounded_positions"``: those the env's MuJoCo
        model names as the body's position on the plane (`positions.unbounded_positions`)
    :param expert_score_net: expert score network; fitted on the first ``train()``
        unless it has been fitted already (then reused as is). Built from the
        spaces and ``score_net_kwargs`` when None
    :param learner_score_net: learner score network; when None, a copy of the
        expert's, so the cost is zero until the learner score has seen learner data
    :param score_net_kwargs: keyword arguments of ``ScoreNetwork`` for networks built here
    :param feature_std_floor: the diffused features are standardised by the expert's
        per-coordinate mean and std, the std raised to at least this, so that a
        coordinate the expert barely moves is not magnified beyond ``1 / floor``.
        None: the raw features, as the reference diffuses them
    :param diffusion_steps: number of diffusion timesteps T (linear betas 1e-4..0.02)
    :param score_opt_cls: optimiser of both score networks
    :param score_opt_kwargs: its keyword arguments (default: ``lr=1e-3``)
    :param expert_fit_steps: gradient steps of expert score pretraining
    :param learner_fit_steps: gradient steps of each round's learner score refit
    :param learner_refit: ``"fresh"``: each round's refit starts from a new
        initialisation and optimiser, as the reference does; ``"warm"``: it
        continues from the last round's network and optimiser (the default until
        December 2026; fresh was at least as good on all six benchmark tasks:
        ``docs/settings.md``)
    :param learner_buffer_size: learner features kept for the refit (sliding window
        of the newest)
    :param cost_timesteps: diffusion timesteps per state in the cost estimate, each
        scored with an antithetic noise pair (4 network evaluations); they are
        importance-sampled from a proposal profiled on learner states every round
    :param cost_precision: arithmetic of the score networks in the cost estimate:
        ``"float32"``, ``"bfloat16"`` or ``"auto"`` (bfloat16 where the learner's
        device computes it natively, e.g. CPUs with AVX512-BF16 or AMX and recent
        GPUs; faster per state in large calls, with the same fidelity: see
        ``benchmarks/cost_speed.py`` and ``benchmarks/fidelity.py``)
    :param relabel_refresh: off-policy learners: stored transitions whose cost is
        recomputed each round, the stalest first; the others keep a cost at most
        ``ceil(stored / relabel_refresh) - 1`` rounds old. ``"auto"``: a quarter of the
        transitions the learner's minibatches draw in a round (64,000 for SAC's
        1,000 gradient steps of 256 a round), so that relabelling costs the same
        however large the replay buffer grows (``benchmarks/overhead.py``); None:
        every drawn transition carries the round's cost, as in the reference, at a
        cost per round that grows with the buffer up to the draws
    :param reward_saturation: the reward is ``tanh(-c / s)``, with ``s`` this
        quantile of the cost on the learner's newest states, set once a round (see
        ``cost.saturation_scale``): states far costlier than the learner's better
        ones, e.g. of a fallen pole, all get nearly the same reward, as under a
        saturated discriminator, rather than a cost of thousands that varies with
        how the learner flails (``docs/settings.md``). None: the plain ``-c``
    :param saturation_states: the learner states whose cost sets the saturation
        scale: ``"newest"``, the newest 1,024 (about the last round's), or
        ``"buffer"``, 1,024 drawn from the learner-state buffer the learner score
        is fitted on, so that the scale moves as slowly as that fit
    :param reward_std: the learner's reward is scaled to this: ``venv_wrapped``'s
        (saturated) reward is multiplied by it, and relabelled minibatches are
        standardised to mean 0 and this standard deviation, as the reference does.
        ``"auto"``: the learner's entropy coefficient where it has one (SAC, TQC:
        the reference pairs rewards of std 0.1 with a temperature of 0.1; SB3
        starts it at 1.0), else 1.0 (PPO, TD3, DDPG, DQN). None: no scaling
    :param reward_normalization: how rewards are standardised to ``reward_std``:
        ``"mean_std"`` (the reference) or ``"robust"`` (median and interquartile
        range, clipped at 3 stds; see ``cost.standardize``), for tasks where a few
        very costly states, e.g. of an agent falling, would squeeze the rest (on
        seals/Hopper-v1 it changed nothing: ``docs/benchmarks.md``)
    :param gen_train_timesteps: learner env steps per round (default: one rollout
        for on-policy learners, 1000 steps for off-policy ones)
    :param log_dir: directory for TensorBoard summaries
    :param custom_logger: where to log; a new imitation logger when None
    :param init_tensorboard: write per-round score summaries and cost histograms
        to ``log_dir/summary``
    :param debug_use_ground_truth: train the learner on the true reward (the
        sanity check imitation offers); score networks are still fitted and logged
    :param allow_variable_horizon: allow episodes of different lengths (see
        imitation's warning on why this biases imitation)
    :param seed: seed of score-network initialisation, fitting and cost noise
    """

    venv_wrapped: vec_env.VecEnvWrapper
    venv_train: vec_env.VecEnv

    def __init__(
        self,
        *,
        demonstrations: data.AnyDemonstrations,
        demo_batch_size: int = 1024,
        venv: vec_env.VecEnv,
        gen_algo: base_class.BaseAlgorithm,
        conditioning: str = "state",
        drop_state_coordinates: Union[Sequence[int], str] = (),
        expert_score_net: Optional[ScoreNetwork] = None,
        learner_score_net: Optional[ScoreNetwork] = None,
        score_net_kwargs: Optional[Mapping[str, Any]] = None,
        feature_std_floor: Optional[float] = 0.0,
        diffusion_steps: int = 1000,
        score_opt_cls: Type[th.optim.Optimizer] = th.optim.AdamW,
        score_opt_kwargs: Optional[Mapping[str, Any]] = None,
        expert_fit_steps: int = 10_000,
        learner_fit_steps: int = 100,
        learner_refit: str = "fresh",
        learner_buffer_size: int = 200_000,
        cost_timesteps: int = 12,
        cost_precision: str = "auto",
        relabel_refresh: Union[int, str, None] = "auto",
        reward_saturation: Optional[float] = 0.25,
        saturation_states: str = "newest",
        reward_std: Union[float, str, None] = "auto",
        reward_normalization: str = "mean_std",
        gen_train_timesteps: Optional[int] = None,
        log_dir: types.AnyPath = "output/",
        custom_logger: Optional[imit_logger.HierarchicalLogger] = None,
        init_tensorboard: bool = False,
        debug_use_ground_truth: bool = False,
        allow_variable_horizon: bool = False,
        seed: Optional[int] = None,
    ):
        data.check_conditioning(conditioning)
        check_precision(cost_precision)
        _check_positive(
            demo_batch_size=demo_batch_size,
            expert_fit_steps=expert_fit_steps,
            learner_buffer_size=learner_buffer_size,
            cost_timesteps=cost_timesteps,
        )
        if learner_fit_steps < 0:
            raise ValueError(f"learner_fit_steps={learner_fit_steps} must be >= 0.")
        if learner_refit not in LEARNER_REFITS:
            raise ValueError(f"learner_refit={learner_refit!r} is not one of {LEARNER_REFITS}.")
        if feature_std_floor is not None and not feature_std_floor >= 0:
            raise ValueError(
                f"feature_std_floor={feature_std_floor!r} must be >= 0, or None for raw features.",
            )
        if relabel_refresh != "auto" and relabel_refresh is not None and (
            not isinstance(relabel_refresh, int) or relabel_refresh < 1
        ):
            raise ValueError(
                f"relabel_refresh={relabel_refresh!r} must be a positive number of transitions, "
                "'auto', or None to recompute every drawn transition's cost each round.",
            )
        if reward_std != "auto" and reward_std is not None and (
            isinstance(reward_std, str) or reward_std <= 0
        ):
            raise ValueError(
                f"reward_std={reward_std!r} must be positive, 'auto' to follow the learner, "
                "or None for no normalisation.",
            )
        if reward_saturation is not None and not 0 < reward_saturation < 1:
            raise ValueError(
                f"reward_saturation={reward_saturation!r} must be a quantile strictly between 0 and 1, "
                "or None for the plain -c.",
            )
        if saturation_states not in SATURATION_STATES:
            raise ValueError(f"saturation_states={saturation_states!r} is not one of {SATURATION_STATES}.")
        if reward_normalization not in REWARD_NORMALIZATIONS:
            raise ValueError(
                f"reward_normalization={reward_normalization!r} is not one of {REWARD_NORMALIZATIONS}.",
            )
        _check_spaces(venv, conditioning)
        _check_learner(gen_algo, venv)
        self.conditioning = conditioning
        self.drop_state_coordinates = tuple(_dropped_coordinates(drop_state_coordinates, venv))
        self._state_coordinates = _kept_coordinates(
            self.drop_state_coordinates, flatten.flat_dim(venv.observation_space),
        )
        self.venv = venv
        self.gen_algo = gen_algo
        self.demo_batch_size = demo_batch_size
        self.expert_fit_steps = expert_fit_steps
        self.learner_fit_steps = learner_fit_steps
        self.learner_refit = learner_refit
        self.feature_std_floor = feature_std_floor
        self.reward_saturation = reward_saturation
        self.saturation_states = saturation_states
        self.reward_std = auto_reward_std(gen_algo) if reward_std == "auto" else reward_std
        self.reward_normalization = reward_normalization
        self.relabel_refresh = relabel_refresh
        self.debug_use_ground_truth = debug_use_ground_truth
        self.seed = seed
        self.generator = th.Generator(device=gen_algo.device)
        self.generator.manual_seed(seed if seed is not None else int(th.randint(2**62, ()).item()))
        # Set by `set_demonstrations`, which the base constructor calls.
        self.expert_data: th.Tensor
        self.expert_heldout: th.Tensor
        if demonstrations is None:
            data.to_arrays(None)  # raises the clear "no demonstrations" error
        super().__init__(
            demonstrations=demonstrations,
            custom_logger=custom_logger,
            allow_variable_horizon=allow_variable_horizon,
        )

        dim = self.expert_data.shape[1]
        with _torch_rng_seeded_from(self.generator):
            self.expert_score_net = expert_score_net or ScoreNetwork(dim, **(score_net_kwargs or {}))
            self.learner_score_net = learner_score_net or ScoreNetwork(dim, **(score_net_kwargs or {}))
        for name, net in (("expert_score_net", self.expert_score_net), ("learner_score_net", self.learner_score_net)):
            if net.dim != dim:
                raise ValueError(
                    f"{name} models {net.dim}-dimensional data, but conditioning="
                    f"{conditioning!r} gives {dim}-dimensional features: build it with dim={dim}.",
                )
        self.expert_score_net.to(gen_algo.device)
        self.learner_score_net.to(gen_algo.device)
        if not self.expert_score_net.is_fitted:
            self.expert_score_net.set_normalization(*self._feature_normalization())
        if not self.learner_score_net.is_fitted:
            # The cost feeds both networks expert-normalised features, so both fit in that space.
            self.learner_score_net.set_normalization(
                self.expert_score_net.mean.cpu().numpy(), self.expert_score_net.std.cpu().numpy(),
            )
        self._copy_expert_into_learner = learner_score_net is None
        self.schedule = DiffusionSchedule(diffusion_steps).to(gen_algo.device)
        self.score_opt_cls = score_opt_cls
        self.score_opt_kwargs = dict(score_opt_kwargs or {"lr": 1e-3})
        self._expert_opt = score_opt_cls(self.expert_score_net.parameters(), **self.score_opt_kwargs)
        self._learner_opt = score_opt_cls(self.learner_score_net.parameters(), **self.score_opt_kwargs)
        self.learner_buffer = LearnerStateBuffer(learner_buffer_size, dim)
        self._reward_net = DiffusionScoreReward(
            venv.observation_space,
            venv.action_space,
            self.expert_score_net,
            self.learner_score_net,
            self.schedule,
            conditioning,
            cost_timesteps,
            self.generator,
            cost_precision,
            self._state_coordinates,
        )

        self._log_dir = util.parse_path(log_dir)
        self._summary_writer = None
        if init_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._summary_writer = SummaryWriter(str(self._log_dir / "summary"))

        self.venv_buffering = wrappers.BufferingWrapper(self.venv)
        if debug_use_ground_truth:
            self.venv_wrapped = self.venv_buffering
            self.gen_callback: Optional[BaseCallback] = None
        else:
            self.venv_wrapped = reward_wrapper.RewardVecEnvWrapper(
                self.venv_buffering,
                reward_fn=self._env_reward,
            )
            self.gen_callback = self.venv_wrapped.make_log_callback()
        self.venv_train = self.venv_wrapped
        self.gen_algo.set_env(self.venv_train)
        self.gen_algo.set_logger(self.logger)
        self._relabels = isinstance(gen_algo, OffPolicyAlgorithm) and not debug_use_ground_truth
        net_reward = relabel.reward_net_fn(self._reward_net, venv.action_space)
        self._net_reward = lambda samples: self._round_reward(net_reward(samples))
        if self._relabels:
            relabel.check_relabelable(gen_algo.replay_buffer)
        self.gen_train_timesteps = gen_train_timesteps or _default_round_length(gen_algo, venv.num_envs)
        if self.gen_train_timesteps < venv.num_envs:
            raise ValueError(
                f"gen_train_timesteps={self.gen_train_timesteps} is less than the "
                f"{venv.num_envs} environments of venv: a round must step each env at least once.",
            )
        self._global_step = 0
        self._relabel_costs: List[float] = []
        # Counts the cost's changes (once a round); each replay slot's stored cost
        # is of some version, for the buffer it was kept for.
        self._cost_version = 0
        self._scored_at: Optional[Tuple[object, np.ndarray]] = None
        # The cost scale of this round's saturated reward (`_round_reward`).
        self._saturation_scale = 1.0

    # -- demonstrations and networks ---------------------------------------------------

    def set_demonstrations(self, demonstrations: data.AnyDemonstrations) -> None:
        """Sets the expert data the expert score network is fitted on (split off 10% held out)."""
        arrays = data.to_arrays(demonstrations, self.venv.observation_space, self.venv.action_space)
        if isinstance(self.venv.observation_space, spaces.Box):
            _warn_if_out_of_bounds(arrays.obs, self.venv.observation_space)
        x = th.as_tensor(arrays.features(self.conditioning, self._state_coordinates), device=self.gen_algo.device)
        perm = th.randperm(len(x), generator=th.Generator().manual_seed(0)).to(x.device)
        n_heldout = int(len(x) * HELDOUT_FRACTION) if len(x) >= 10 else 0
        self.expert_heldout = x[perm[:n_heldout]] if n_heldout else x
        self.expert_data = x[perm[n_heldout:]]

    def features(self, demonstrations: data.AnyDemonstrations) -> np.ndarray:
        """What is diffused of ``demonstrations`` (or of any trajectories or transitions of
        the task): the ``conditioning``'s features of the kept state coordinates, as the
        score networks take them (raw; the networks standardise them)."""
        arrays = data.to_arrays(demonstrations, self.venv.observation_space, self.venv.action_space)
        return arrays.features(self.conditioning, self._state_coordinates)

    def _feature_normalization(self) -> Tuple[np.ndarray, np.ndarray]:
        """The mean and std the score networks standardise features with."""
        if self.feature_std_floor is None:
            dim = self.expert_data.shape[1]
            return np.zeros(dim), np.ones(dim)
        mean, std = self.expert_data.mean(0).cpu().numpy(), self.expert_data.std(0).cpu().numpy()
        # One-hot and binary coordinates map {0, 1} to {-1, 1} whatever the expert's
        # spread: one the expert (nearly) never changes would otherwise be scaled up
        # without bound.
        binary = self._binary_features()
        return np.where(binary, 0.5, mean), np.where(binary, 0.5, np.maximum(std, self.feature_std_floor))

    def _binary_features(self) -> np.ndarray:
        """Which feature coordinates are one-hot or binary (see `flatten`)."""
        obs = flatten.binary_coordinates(self.venv.observation_space)
        obs = obs if self._state_coordinates is None else obs[self._state_coordinates]
        second = {"state": [], "state_action": [flatten.binary_coordinates(self.venv.action_space)],
                  "state_next_state": [obs]}[self.conditioning]
        return np.concatenate([obs, *second])

    @property
    def policy(self) -> policies.BasePolicy:
        return self.gen_algo.policy

    @property
    def reward_train(self) -> DiffusionScoreReward:
        """The reward the learner is trained on (``-c``), an imitation ``RewardNet``."""
        return self._reward_net

    @property
    def reward_test(self) -> DiffusionScoreReward:
        """The same reward: there is no shaping to remove."""
        return self._reward_net

    def pretrain_expert(self, n_steps: Optional[int] = None, progress_bar: bool = True) -> float:
        """Fits the expert score network on the demonstrations.

        :param n_steps: gradient steps (default ``expert_fit_steps``)
        :return: the denoising loss on the held-out 10% of the demonstrations
        """
        n_steps = n_steps or self.expert_fit_steps
        x = self.expert_data

        def batch(n: int) -> th.Tensor:
            return x[th.randint(0, len(x), (n,), generator=self.generator, device=x.device)]

        train_loss = score_net.fit(
            self.expert_score_net, self.schedule, batch, self._expert_opt, n_steps,
            self.demo_batch_size, self.generator, progress_bar, "expert score",
        )
        heldout = score_net.heldout_loss(self.expert_score_net, self.schedule, self.expert_heldout)
        _check_finite(heldout, "expert held-out denoising loss", self._global_step)
        self.logger.record("diffusion/expert_train_loss", train_loss)
        self.logger.record("diffusion/expert_heldout_loss", heldout)
        self.logger.log(f"Expert score fitted: train loss {train_loss:.4f}, held-out loss {heldout:.4f}")
        return heldout

    def train_learner_score(self) -> float:
        """Refits the learner score on the learner's features gathered so far (follow-the-leader)."""
        def batch(n: int) -> th.Tensor:
            return self.learner_buffer.sample(n, None).to(self.gen_algo.device)

        if self.learner_refit == "fresh":
            self._reinitialize_learner_score()

        return score_net.fit(
            self.learner_score_net, self.schedule, batch, self._learner_opt,
            self.learner_fit_steps, self.demo_batch_size, self.generator,
        )

    def _reinitialize_learner_score(self) -> None:
        """New weights (drawn from this trainer's generator) and a new optimiser; the
        normaliser stays the expert's."""
        with _torch_rng_seeded_from(self.generator):
            for layer in self.learner_score_net.mlp:
                if isinstance(layer, th.nn.Linear):
                    layer.reset_parameters()
        self._learner_opt = self.score_opt_cls(self.learner_score_net.parameters(), **self.score_opt_kwargs)

    # -- training ----------------------------------------------------------------------

    def _env_reward(self, *transition: np.ndarray) -> np.ndarray:
        rewards = self._round_reward(th.as_tensor(self.reward_train.predict_processed(*transition)))
        _check_finite(rewards, "reward of venv_wrapped", self._global_step)
        return rewards.numpy()

    def _round_reward(self, rewards: th.Tensor) -> th.Tensor:
        """``-c`` saturated at the round's scale and scaled to ``reward_std``."""
        if self.reward_saturation is not None:
            rewards = th.tanh(rewards / self._saturation_scale)
        return rewards if self.reward_std is None else rewards * self.reward_std

    def _cost_of(self, rewards: th.Tensor) -> th.Tensor:
        """The cost ``c`` of `_round_reward`'s rewards (its inverse; a cost beyond float
        precision of saturation comes back as a large finite one)."""
        if self.reward_std is not None:
            rewards = rewards / self.reward_std
        if self.reward_saturation is not None:
            rewards = th.atanh(rewards.clamp(-1 + 1e-6, 1 - 1e-6)) * self._saturation_scale
        return -rewards

    def _resample_cost_timesteps(self) -> None:
        """The round's cost timesteps, importance-sampled for the learner's states so far,
        and the round's saturation scale, from the learner's states (``saturation_states``)."""
        states = None
        if len(self.learner_buffer):
            states = self.learner_buffer.sample(PROFILE_STATES).to(self.gen_algo.device)
        self._reward_net.resample_timesteps(states)
        self._cost_version += 1
        if self.reward_saturation is None:
            return
        expert = self.expert_heldout[:N_COST_LOG_SAMPLES]
        if not len(self.learner_buffer):
            learner = expert
        elif self.saturation_states == "newest":
            learner = th.as_tensor(self.learner_buffer.newest(N_COST_LOG_SAMPLES), device=expert.device)
        else:
            learner = self.learner_buffer.sample(N_COST_LOG_SAMPLES).to(expert.device)
        with th.no_grad():
            costs = [self._reward_net.cost(x) for x in (learner, expert)]
        self._saturation_scale = saturation_scale(*costs, self.reward_saturation)
        self.logger.record("diffusion/saturation_scale", self._saturation_scale)

    def _expected_replay_draws(self, total_timesteps: int) -> Optional[int]:
        """Transitions the off-policy learner's minibatches draw in ``total_timesteps`` env steps.

        None where SB3 trains per episode, whose count is not known ahead.
        """
        algo = self.gen_algo
        if algo.train_freq.unit != TrainFrequencyUnit.STEP:
            return None
        steps_per_rollout = algo.train_freq.frequency * self.venv.num_envs
        gradient_steps = algo.gradient_steps if algo.gradient_steps >= 0 else steps_per_rollout
        return total_timesteps // steps_per_rollout * gradient_steps * algo.batch_size

    def _relabeled_sampling(self, expected_draws: Optional[int]) -> ContextManager[None]:
        """The learner's minibatches carry this round's cost, or one at most a few rounds old."""
        buffer = self.gen_algo.replay_buffer
        refresh = self.relabel_refresh
        if refresh == "auto":
            refresh = None if expected_draws is None else max(1, expected_draws // AUTO_REFRESH_DRAWS)
        scored_at = None
        if refresh is not None:
            if self._scored_at is None or self._scored_at[0] is not buffer:
                self._scored_at = (buffer, relabel.new_scored_at(buffer))
            scored_at = self._scored_at[1]
        return relabel.relabeled_sampling(
            buffer, self._net_reward, self._minibatch_reward,
            version=lambda: self._cost_version,
            expected_draws=expected_draws,
            stores_current_rewards=True,  # venv_wrapped's reward is this round's -c
            scored_at=scored_at,
            refresh=refresh,
        )

    def _minibatch_reward(self, rewards: th.Tensor) -> th.Tensor:
        """Each relabelled minibatch, standardised as the reference does."""
        self._relabel_costs.append(float(self._cost_of(rewards).mean()))
        if self.reward_std is not None:
            rewards = standardize(rewards, self.reward_std, robust=self.reward_normalization == "robust")
        _check_finite(rewards, "relabelled reward", self._global_step)
        return rewards

    def train_gen(self, total_timesteps: Optional[int] = None, learn_kwargs: Optional[Mapping] = None) -> None:
        """Trains the learner for ``total_timesteps`` env steps on the current reward.

        The states it visits are added to the learner-state buffer.
        """
        total_timesteps = total_timesteps or self.gen_train_timesteps
        learn_kwargs = dict(learn_kwargs or {})
        self._resample_cost_timesteps()
        callbacks = [c for c in (self.gen_callback, learn_kwargs.pop("callback", None)) if c is not None]
        self._relabel_costs = []
        start = time.perf_counter()
        with self.logger.accumulate_means("gen"):
            if self._relabels:
                context = self._relabeled_sampling(self._expected_replay_draws(total_timesteps))
            else:
                context = contextlib.nullcontext()
            with context:
                self.gen_algo.learn(
                    total_timesteps=total_timesteps,
                    reset_num_timesteps=False,
                    callback=callbacks,
                    **learn_kwargs,
                )
        elapsed = time.perf_counter() - start
        trajectories, ep_lens = self.venv_buffering.pop_trajectories()
        self._check_fixed_horizon(ep_lens)
        new = self.features(trajectories)
        self.learner_buffer.add(new)
        self._last_round_features = new
        self.logger.record("diffusion/env_steps_per_second", total_timesteps / elapsed)
        true_returns = _complete_episode_returns(trajectories, ep_lens)
        if true_returns:
            self.logger.record("diffusion/true_return", float(np.mean(true_returns)))
        if self._relabel_costs:
            self.logger.record("diffusion/relabel_cost_mean", float(np.mean(self._relabel_costs)))

    def train(
        self,
        total_timesteps: int,
        callback: Optional[Callable[[int], None]] = None,
        gen_callback: Optional[Union[BaseCallback, List[BaseCallback]]] = None,
        progress_bar: bool = True,
    ) -> None:
        """Alternates learner training and learner-score refits, in rounds.

        A round is ``train_gen(gen_train_timesteps)``, a learner-score refit, then
        ``callback(round)``. Training ends once another round would exceed
        ``total_timesteps``. The expert score is fitted first unless it already is.

        :param total_timesteps: upper bound on the env steps taken
        :param callback: called with the round number at the end of every round
        :param gen_callback: SB3 callback(s) passed to the learner's ``learn``
        :param progress_bar: show a progress bar over rounds
        """
        n_rounds = total_timesteps // self.gen_train_timesteps
        if n_rounds < 1:
            raise ValueError(
                f"total_timesteps={total_timesteps} is less than one round of "
                f"gen_train_timesteps={self.gen_train_timesteps}: raise total_timesteps "
                "or lower gen_train_timesteps.",
            )
        if not self.expert_score_net.is_fitted:
            self.pretrain_expert(progress_bar=progress_bar)
        if self._copy_expert_into_learner and not self.learner_score_net.is_fitted:
            self.learner_score_net.load_state_dict(self.expert_score_net.state_dict())
        self.expert_score_net.requires_grad_(False)
        for r in tqdm(range(n_rounds), desc="round", disable=not progress_bar):
            self.train_gen(self.gen_train_timesteps, {"callback": gen_callback} if gen_callback else None)
            learner_loss = self.train_learner_score()
            _check_finite(learner_loss, "learner score loss", self._global_step)
            self._log_round(learner_loss)
            # Counted before the callback, so a checkpoint saved there records the round as done.
            self._global_step += 1
            if callback:
                callback(r)
            self.logger.dump(self._global_step)

    @property
    def rounds_done(self) -> int:
        """Rounds completed over this trainer's life, including those before a `load`."""
        return self._global_step

    def _log_round(self, learner_loss: float) -> None:
        newest = th.as_tensor(self._last_round_features[-N_COST_LOG_SAMPLES:], device=self.gen_algo.device)
        with th.no_grad():
            cost_learner = self._reward_net.cost(newest)
            cost_expert = self._reward_net.cost(self.expert_heldout[:N_COST_LOG_SAMPLES])
        _check_finite(cost_learner, "cost on learner states", self._global_step)
        stats = {
            "learner_loss": learner_loss,
            "cost_learner": float(cost_learner.mean()),
            "cost_expert": float(cost_expert.mean()),
            "learner_buffer_size": len(self.learner_buffer),
            "round": self._global_step,
        }
        for key, value in stats.items():
            self.logger.record(f"diffusion/{key}", value)
        if self._summary_writer is not None:
            for key, value in stats.items():
                self._summary_writer.add_scalar(f"diffusion/{key}", value, self._global_step)
            self._summary_writer.add_histogram("diffusion/cost_learner", cost_learner, self._global_step)

    # -- persistence -------------------------------------------------------------------

    def _settings(self) -> Dict[str, Any]:
        return dict(
            conditioning=self.conditioning,
            drop_state_coordinates=list(self.drop_state_coordinates),
            demo_batch_size=self.demo_batch_size,
            diffusion_steps=self.schedule.n_steps,
            expert_fit_steps=self.expert_fit_steps,
            learner_fit_steps=self.learner_fit_steps,
            learner_refit=self.learner_refit,
            feature_std_floor=self.feature_std_floor,
            learner_buffer_size=self.learner_buffer.capacity,
            cost_timesteps=self._reward_net.n_timesteps,
            cost_precision=self._reward_net.precision,
            relabel_refresh=self.relabel_refresh,
            reward_saturation=self.reward_saturation,
            saturation_states=self.saturation_states,
            reward_std=self.reward_std,
            reward_normalization=self.reward_normalization,
            gen_train_timesteps=self.gen_train_timesteps,
            score_opt_kwargs=self.score_opt_kwargs,
            seed=self.seed,
        )

    def save(self, path: types.AnyPath, include_learner: bool = True) -> None:
        """Writes a checkpoint to ``path`` atomically (a temporary file, then a rename).

        It holds the score networks and their optimiser states, the learner-state
        buffer, the round counter, the random states (this trainer's and the
        process-wide torch/NumPy/Python ones SB3 draws from) and, unless
        ``include_learner=False``, the SB3 learner with its replay buffer, so that
        `load` resumes training where it stopped. Episodes in progress are not
        saved (SB3 cannot save environments): a resumed run starts new ones.
        """
        state = {
            "settings": self._settings(),
            "expert_config": self.expert_score_net.config(),
            "learner_config": self.learner_score_net.config(),
            "expert_state": self.expert_score_net.state_dict(),
            "learner_state": self.learner_score_net.state_dict(),
            "expert_opt": self._expert_opt.state_dict(),
            "learner_opt": self._learner_opt.state_dict(),
            "learner_buffer": self.learner_buffer.state_dict(),
            "copy_expert_into_learner": self._copy_expert_into_learner,
            "round": self._global_step,
            "generator": self.generator.get_state(),
            "generator_device": self.generator.device.type,
            "global_rng": checkpoint.global_rng_state(),
            "learner": checkpoint.learner_state(self.gen_algo) if include_learner else None,
        }
        checkpoint.write(path, state, self.venv)

    @classmethod
    def load(
        cls,
        path: types.AnyPath,
        *,
        demonstrations: data.AnyDemonstrations,
        venv: vec_env.VecEnv,
        gen_algo: Optional[base_class.BaseAlgorithm] = None,
        **kwargs: Any,
    ) -> "DiffusionScoreIL":
        """Rebuilds a trainer from a `save` checkpoint, ready to continue training.

        :param path: the checkpoint
        :param demonstrations: the expert data of the run (the saved expert score is
            reused; the data is needed for logging the held-out loss)
        :param venv: an environment of the task the checkpoint was made on
        :param gen_algo: the learner; when None, the one saved in the checkpoint
            (with its replay buffer) is restored on ``venv``
        :param kwargs: override saved settings
        """
        state = checkpoint.read(path, venv)
        if gen_algo is None:
            if state["learner"] is None:
                raise ValueError(f"{path} was saved without the learner: pass gen_algo.")
            gen_algo = checkpoint.restore_learner(state["learner"], venv)
        nets = []
        for name in ("expert", "learner"):
            net = ScoreNetwork(**state[f"{name}_config"])
            net.load_state_dict(state[f"{name}_state"])
            nets.append(net)
        # Checkpoints from before these settings: the plain -c, every coordinate, the warm refit.
        settings = {
            "reward_saturation": None, "drop_state_coordinates": (), "learner_refit": "warm",
            **state["settings"], **kwargs,
        }
        trainer = cls(
            demonstrations=demonstrations,
            venv=venv,
            gen_algo=gen_algo,
            expert_score_net=nets[0],
            learner_score_net=nets[1],
            **settings,
        )
        trainer._expert_opt.load_state_dict(state["expert_opt"])
        trainer._learner_opt.load_state_dict(state["learner_opt"])
        trainer.learner_buffer.load_state_dict(state["learner_buffer"])
        trainer._copy_expert_into_learner = state["copy_expert_into_learner"]
        trainer._global_step = state["round"]
        # Random states last: building the trainer above draws from them.
        checkpoint.restore_generator(trainer.generator, state["generator"], state.get("generator_device", "cpu"))
        checkpoint.set_global_rng_state(state["global_rng"])
        return trainer


@contextlib.contextmanager
def _torch_rng_seeded_from(generator: th.Generator) -> Iterator[None]:
    """Torch's global RNG, which layer initialisation draws from, seeded from ``generator``
    for the block and restored after it; the GPUs' too where CUDA is in use (layers on a
    GPU draw from them). Not `th.manual_seed`: before CUDA starts, it queues a seed that
    would outlive the block."""
    seed = int(th.randint(2**62, (), generator=generator, device=generator.device).item())
    gpus = range(th.cuda.device_count()) if th.cuda.is_initialized() else []
    with th.random.fork_rng(devices=gpus):
        th.default_generator.manual_seed(seed)
        if gpus:
            th.cuda.manual_seed_all(seed)
        yield


def _complete_episode_returns(
    trajectories: List[types.TrajectoryWithRew], ep_lens: List[int],
) -> List[float]:
    """True returns of the episodes that ran wholly within this round.

    Finished fragments and episode lengths are recorded in the same order; a
    fragment that started in an earlier round is shorter than its episode.
    """
    finished = [t for t in trajectories if t.terminal]
    return [float(t.rews.sum()) for t, n in zip(finished, ep_lens) if len(t.acts) == n]


def _warn_if_out_of_bounds(obs: np.ndarray, space: spaces.Box) -> None:
    """:param obs: flattened states ``(n, prod(space.shape))``"""
    # Where the space is unbounded, "huge" stands in for its bound; float64, since
    # float32 bounds near float32's largest value (CartPole's) overflow the slack below.
    low = np.where(np.isfinite(space.low), space.low, -HUGE_OBSERVATION).astype(np.float64).reshape(-1)
    high = np.where(np.isfinite(space.high), space.high, HUGE_OBSERVATION).astype(np.float64).reshape(-1)
    # Relative slack: float32 rounding of values that sit on a bound.
    outside = (obs < low - 1e-5 * (1 + np.abs(low))) | (obs > high + 1e-5 * (1 + np.abs(high)))
    if outside.any():
        warnings.warn(
            f"{int(outside.sum())} demonstration state values lie outside the observation "
            f"space's bounds or beyond +-{HUGE_OBSERVATION:g} where it has none (largest |x| = "
            f"{float(np.abs(obs).max()):.3g}): check that they come from this task, in the "
            "units the env reports (not normalised or rescaled).",
            stacklevel=4,
        )


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1.")


def _check_finite(value: Union[float, th.Tensor], what: str, round_: int) -> None:
    if not bool(th.isfinite(th.as_tensor(value)).all()):
        raise FloatingPointError(
            f"Non-finite {what} in round {round_}: stopping. Check the demonstrations and "
            "the environment's observations for NaN/inf or huge values, or lower the score learning rate.",
        )


def auto_reward_std(gen_algo: base_class.BaseAlgorithm) -> float:
    """``reward_std="auto"``: the learner's entropy coefficient (temperature) if it has one, else 1.0.

    With rewards much smaller than SAC's temperature the policy stays near-random
    for thousands of steps (Pendulum-v1: std 0.1 under SB3's initial temperature
    of 1.0, ``docs/settings.md``); PPO normalises advantages, and TD3, DDPG and
    DQN explore by fixed noise, so for them only the value scale changes.
    """
    if not isinstance(gen_algo, OffPolicyAlgorithm):
        return 1.0
    if getattr(gen_algo, "log_ent_coef", None) is not None:  # ent_coef="auto..."
        return float(th.exp(gen_algo.log_ent_coef.detach()).item())
    if getattr(gen_algo, "ent_coef_tensor", None) is not None:  # a fixed ent_coef
        return float(gen_algo.ent_coef_tensor.item())
    return 1.0


def _check_learner(gen_algo: base_class.BaseAlgorithm, venv: vec_env.VecEnv) -> None:
    if not isinstance(gen_algo, (OffPolicyAlgorithm, on_policy_algorithm.OnPolicyAlgorithm)):
        raise TypeError(
            f"gen_algo is a {type(gen_algo).__name__}, which DiffusionScoreIL cannot train: it needs "
            "an off-policy learner with a replay buffer to relabel (SB3's SAC, TD3, DDPG, DQN, "
            "sb3-contrib's TQC, QR-DQN) or an on-policy one that trains on venv_wrapped's reward "
            "(PPO, A2C, sb3-contrib's TRPO, RecurrentPPO).",
        )
    for name in ("observation_space", "action_space"):
        theirs, ours = getattr(gen_algo, name), getattr(venv, name)
        if theirs != ours:
            raise ValueError(
                f"gen_algo's {name} {theirs} differs from venv's {ours}: build the learner "
                "on the same environment as venv.",
            )


def _dropped_coordinates(drop: Union[Sequence[int], str], venv: vec_env.VecEnv) -> Sequence[int]:
    if not isinstance(drop, str):
        return drop
    if drop != UNBOUNDED_POSITIONS:
        raise ValueError(
            f"drop_state_coordinates={drop!r}: give the coordinates' indices or {UNBOUNDED_POSITIONS!r}.",
        )
    return positions.unbounded_positions(venv)


def _kept_coordinates(drop: Sequence[int], dim: int) -> Optional[List[int]]:
    """The state coordinates diffused when ``drop`` are left out (None: all of them)."""
    bad = [i for i in drop if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < dim]
    if bad:
        raise ValueError(
            f"drop_state_coordinates={list(drop)}: {bad} are not coordinates of the {dim}-dimensional "
            f"(flattened) observation; give indices from 0 to {dim - 1}.",
        )
    dropped = set(drop)
    kept = [i for i in range(dim) if i not in dropped]
    if not kept:
        raise ValueError(f"drop_state_coordinates={list(drop)} leaves out every coordinate: nothing would be diffused.")
    return kept if drop else None


def _check_spaces(venv: vec_env.VecEnv, conditioning: str) -> None:
    flatten.check_space(venv.observation_space, "Observation")
    if conditioning == "state_action":
        flatten.check_space(venv.action_space, "Action")


def _default_round_length(gen_algo: base_class.BaseAlgorithm, n_envs: int) -> int:
    if isinstance(gen_algo, on_policy_algorithm.OnPolicyAlgorithm):
        return gen_algo.n_steps * n_envs
    return -(-DEFAULT_OFF_POLICY_ROUND // n_envs) * n_envs
