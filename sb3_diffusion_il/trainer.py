"""``DiffusionScoreIL``: imitation by diffusion score matching, a drop-in for GAIL/AIRL."""

import contextlib
import time
from typing import Any, Callable, List, Optional, Union

import numpy as np
import torch as th
from imitation.algorithms import base
from imitation.data import types, wrappers
from imitation.util import logger as imit_logger
from imitation.util import util
from stable_baselines3.common import base_class, on_policy_algorithm, policies, vec_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from tqdm.auto import tqdm

from sb3_diffusion_il import absorbing, checkpoint, data, relabel, settings
from sb3_diffusion_il.buffers import LearnerStateBuffer
from sb3_diffusion_il.cost import PROFILE_STATES, DiffusionScoreReward, TrainingReward, reward_std_for
from sb3_diffusion_il.diffusion import DiffusionSchedule
from sb3_diffusion_il.features import Features
from sb3_diffusion_il.score_net import ScoreNetwork, ScorePair, heldout_loss, torch_rng_seeded_from

# Rounds of an off-policy learner when `gen_train_timesteps` is not given: the
# reference refits the learner score every 1,001 env steps.
DEFAULT_OFF_POLICY_ROUND = 1000
# States scored per round to log the mean cost (the divergence estimate) and to set
# the saturation scale.
N_COST_LOG_SAMPLES = 1024
HELDOUT_FRACTION = 0.1


class DiffusionScoreIL(base.DemonstrationAlgorithm[types.Transitions]):
    """Score-matching imitation learning (SMILING) around any Stable-Baselines3 learner.

    An expert score network is fitted once on the demonstrations; a learner score
    network is refitted every round on the learner's own states. The learner is
    trained with a reward of ``-c`` (`reward_train`, saturated and scaled), where ``c``
    compares how well the two networks denoise a noised copy of each state (see
    `sb3_diffusion_il.cost`). Off-policy learners (SAC, TD3, DDPG, TQC, DQN) have
    every replay minibatch relabelled with the current reward; on-policy learners
    (PPO) get it from ``venv_wrapped``, imitation's reward-wrapping VecEnv.
    An episode that the env ends early goes on in an absorbing state, worth what
    how often the expert and the learner reach it says (`sb3_diffusion_il.absorbing`,
    the ``absorbing_states`` setting), so such tasks need no ``allow_variable_horizon``.

    The arguments shared with ``imitation.algorithms.adversarial.AdversarialTrainer``
    mean the same; instead of ``reward_net`` this takes score networks and the
    method's settings.

    :param demonstrations: expert data: a sequence of ``Trajectory``,
        ``Transitions``, ``TransitionsMinimal``, an iterable of transition dicts, or
        an array of states ``(n, obs_dim)``
    :param demo_batch_size: batch size of every score-network gradient step
    :param venv: the vectorised environment to train in
    :param gen_algo: the SB3 learner; its environment is set to ``venv_train`` and
        its logger to this trainer's
    :param expert_score_net: expert score network; fitted on the first ``train()``
        unless it has been fitted already (then reused as is). Built from the
        features' dimension and ``score_net_kwargs`` when None
    :param learner_score_net: learner score network; when None, one like the expert's
    :param gen_train_timesteps: learner env steps per round (default: one rollout
        for on-policy learners, 1000 steps for off-policy ones)
    :param log_dir: directory for TensorBoard summaries
    :param custom_logger: where to log; a new imitation logger when None
    :param init_tensorboard: write per-round score summaries and cost histograms
        to ``log_dir/summary``
    :param debug_use_ground_truth: train the learner on the true reward (the
        sanity check imitation offers); score networks are still fitted and logged
    :param allow_variable_horizon: allow episodes of different lengths when
        ``absorbing_states=False`` (see imitation's warning on why this biases
        imitation); absorbing states allow them without the bias
    :param seed: seed of score-network initialisation, fitting and cost noise
    :param method_settings: the method's settings (``conditioning``, ``reward_std``, ...):
        the fields of `sb3_diffusion_il.settings.Settings`, where each is documented
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
        expert_score_net: Optional[ScoreNetwork] = None,
        learner_score_net: Optional[ScoreNetwork] = None,
        gen_train_timesteps: Optional[int] = None,
        log_dir: types.AnyPath = "output/",
        custom_logger: Optional[imit_logger.HierarchicalLogger] = None,
        init_tensorboard: bool = False,
        debug_use_ground_truth: bool = False,
        allow_variable_horizon: bool = False,
        seed: Optional[int] = None,
        **method_settings: Any,
    ):
        self.settings = settings.build(method_settings)
        _check_venv(venv)
        settings.check_int("demo_batch_size", demo_batch_size)
        if gen_train_timesteps is not None:
            settings.check_int("gen_train_timesteps", gen_train_timesteps)
        self.featurizer = Features(venv, self.settings.conditioning, self.settings.drop_state_coordinates)
        _check_learner(gen_algo, venv)
        self.venv, self.gen_algo, self.seed = venv, gen_algo, seed
        self.demo_batch_size = demo_batch_size
        self.generator = th.Generator(device=gen_algo.device)
        self.generator.manual_seed(seed if seed is not None else int(th.randint(2**62, ()).item()))
        if demonstrations is None:
            data.to_arrays(None)  # raises the clear "no demonstrations" error
        # `set_demonstrations`, which the base constructor calls, sets these.
        self.expert_data: th.Tensor
        self.expert_heldout: th.Tensor
        super().__init__(
            demonstrations=demonstrations, custom_logger=custom_logger, allow_variable_horizon=allow_variable_horizon,
        )
        self._build_scores(expert_score_net, learner_score_net)
        # A learner score built here starts as a copy of the fitted expert's, so that the
        # cost is zero until the learner score has seen the learner's states.
        self._copy_expert_into_learner = learner_score_net is None
        self.reward_std = reward_std_for(gen_algo, self.settings.reward_std)
        cost = DiffusionScoreReward(
            venv.observation_space, venv.action_space, self.expert_score_net, self.learner_score_net,
            self.schedule, self.settings.conditioning, self.settings.cost_timesteps, self.generator,
            self.settings.cost_precision, self.featurizer.state_coordinates,
        )
        self._reward = TrainingReward(cost, self.settings.reward_saturation, self.reward_std)
        self._log_dir = util.parse_path(log_dir)
        self._summary_writer = None
        if init_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._summary_writer = SummaryWriter(str(self._log_dir / "summary"))
        self.venv_buffering = wrappers.BufferingWrapper(self.venv)
        self.gen_callback: Optional[BaseCallback] = _FiniteRewards()
        self.venv_wrapped = self.venv_buffering
        if not debug_use_ground_truth:
            # Off-policy learners get the worth of an episode's end in relabelled minibatches.
            gamma = None if isinstance(gen_algo, OffPolicyAlgorithm) or not self.settings.absorbing_states else (
                gen_algo.gamma)
            self.venv_wrapped = absorbing.EndWorthWrapper(self.venv_buffering, self._env_reward, gamma)
            self.gen_callback = self.venv_wrapped.make_log_callback()
        self.venv_train = self.venv_wrapped
        self.gen_algo.set_env(self.venv_train)
        self.gen_algo.set_logger(self.logger)
        self._relabeling = None
        if isinstance(gen_algo, OffPolicyAlgorithm) and not debug_use_ground_truth:
            self._relabel_reward = relabel.reward_net_fn(self._reward, venv.action_space)
            self._relabeling = relabel.RoundRelabeling(
                gen_algo, self._relabel_reward, self._minibatch_reward, self.settings.relabel_refresh,
            )
        self.gen_train_timesteps = gen_train_timesteps or default_round_length(gen_algo, venv.num_envs)
        if self.gen_train_timesteps < venv.num_envs:
            raise ValueError(
                f"gen_train_timesteps={self.gen_train_timesteps} is less than the "
                f"{venv.num_envs} environments of venv: a round must step each env at least once.",
            )
        self._global_step = 0
        # Counts the reward's changes (once a round): each relabelled transition's
        # stored reward is of some version.
        self._reward_version = 0
        self._relabel_costs: List[float] = []
        self._last_round_features = np.zeros((0, self.expert_data.shape[1]), np.float32)

    def _build_scores(self, expert: Optional[ScoreNetwork], learner: Optional[ScoreNetwork]) -> None:
        """The score networks (built here unless given), standardising features with the
        expert's statistics, and their fitting."""
        dim = self.expert_data.shape[1]
        with torch_rng_seeded_from(self.generator):
            expert = expert or ScoreNetwork(dim, **self.settings.score_net_kwargs)
            learner = learner or ScoreNetwork(dim, **self.settings.score_net_kwargs)
        for name, net in (("expert_score_net", expert), ("learner_score_net", learner)):
            if net.dim != dim:
                raise ValueError(
                    f"{name} models {net.dim}-dimensional data, but conditioning="
                    f"{self.settings.conditioning!r} gives {dim}-dimensional features: build it with dim={dim}.",
                )
        self.expert_score_net, self.learner_score_net = (net.to(self.gen_algo.device) for net in (expert, learner))
        if not expert.is_fitted:
            expert.set_normalization(*self.featurizer.normalization(self.expert_data))
        if not learner.is_fitted:
            learner.set_normalization(expert.mean.cpu().numpy(), expert.std.cpu().numpy())
        self.schedule = DiffusionSchedule(self.settings.diffusion_steps).to(self.gen_algo.device)
        self.learner_buffer = LearnerStateBuffer(self.settings.learner_buffer_size, dim)
        self.scores = ScorePair(
            expert, learner, self.schedule, self.settings.score_opt_cls, dict(self.settings.score_opt_kwargs),
            self.demo_batch_size, self.learner_buffer, self.generator,
        )

    def set_demonstrations(self, demonstrations: data.AnyDemonstrations) -> None:
        """Sets the expert data the expert score network is fitted on (split off 10% held out)."""
        x = th.as_tensor(self.featurizer.of(demonstrations, check_bounds=True), device=self.gen_algo.device)
        perm = th.randperm(len(x), generator=th.Generator().manual_seed(0)).to(x.device)
        n_heldout = int(len(x) * HELDOUT_FRACTION) if len(x) >= 10 else 0
        self.expert_heldout = x[perm[:n_heldout]] if n_heldout else x
        self.expert_data = x[perm[n_heldout:]]
        self._expert_absorbed = absorbing.expert_absorbed(demonstrations, absorbing.time_limit(self.venv))

    def features(self, demonstrations: data.AnyDemonstrations) -> np.ndarray:
        """What is diffused of ``demonstrations`` (or of any trajectories or transitions of
        the task), as the score networks take them (raw; the networks standardise them)."""
        return self.featurizer.of(demonstrations)

    @property
    def policy(self) -> policies.BasePolicy:
        return self.gen_algo.policy

    @property
    def reward_train(self) -> TrainingReward:
        """The reward the learner is trained on, an imitation ``RewardNet``: what
        ``venv_wrapped`` pays, and what relabelled minibatches hold before each is standardised."""
        return self._reward

    @property
    def reward_test(self) -> TrainingReward:
        """The same reward: there is no shaping to remove."""
        return self._reward

    def pretrain_expert(self, n_steps: Optional[int] = None, progress_bar: bool = True) -> float:
        """Fits the expert score network on the demonstrations.

        :param n_steps: gradient steps (default: the ``expert_fit_steps`` setting)
        :return: the denoising loss on the held-out 10% of the demonstrations
        """
        n_steps = n_steps or self.settings.expert_fit_steps
        train_loss = self.scores.fit_expert(self.expert_data, n_steps, progress_bar)
        heldout = heldout_loss(self.expert_score_net, self.schedule, self.expert_heldout)
        _check_finite(heldout, "expert held-out denoising loss", self._global_step)
        self.logger.record("diffusion/expert_train_loss", train_loss)
        self.logger.record("diffusion/expert_heldout_loss", heldout)
        self.logger.log(f"Expert score fitted: train loss {train_loss:.4f}, held-out loss {heldout:.4f}")
        return heldout

    def train_learner_score(self) -> float:
        """Refits the learner score on the learner's features gathered so far (follow-the-leader)."""
        return self.scores.refit_learner(self.settings.learner_fit_steps)

    def _env_reward(self, *transition: np.ndarray) -> np.ndarray:
        rewards = self.reward_train.predict_processed(*transition, training=True)
        _check_finite(th.as_tensor(rewards), "reward of venv_wrapped", self._global_step)
        return rewards

    def _minibatch_reward(self, samples: relabel.Samples) -> th.Tensor:
        """Each relabelled minibatch's rewards, standardised as the reference does, a
        termination's with the worth of staying absorbed (`sb3_diffusion_il.absorbing`)."""
        self._relabel_costs.append(float(self._reward.cost_of(samples.rewards).mean()))
        ended, stay = None, None
        if self.settings.absorbing_states:
            ended = samples.dones.reshape(-1) > 0  # SB3's samples: terminations, not time limits
            if ended.any():
                stay = absorbing.stay_reward(samples.rewards.min(), samples.rewards.max(),
                                             float(ended.float().mean()), self._expert_absorbed)
        rewards = self._reward.minibatch(samples.rewards, ended, stay, self.gen_algo.gamma)
        _check_finite(rewards, "relabelled reward", self._global_step)
        return rewards

    def _new_round(self) -> None:
        """The round's reward: cost timesteps importance-sampled for the learner's states so
        far, and the saturation scale from the cost of its newest."""
        expert = self.expert_heldout[:N_COST_LOG_SAMPLES]
        profiled, learner = None, expert
        if len(self.learner_buffer):
            profiled = self.learner_buffer.sample(PROFILE_STATES).to(self.gen_algo.device)
            learner = th.as_tensor(self.learner_buffer.newest(N_COST_LOG_SAMPLES), device=expert.device)
        self._reward.new_round(profiled, learner, expert)
        if isinstance(self.venv_wrapped, absorbing.EndWorthWrapper):
            self.venv_wrapped.new_round(self._expert_absorbed)
        self._reward_version += 1
        if self._reward.saturation is not None:
            self.logger.record("diffusion/saturation_scale", self._reward.scale)

    def train_gen(self, total_timesteps: Optional[int] = None, learn_kwargs: Optional[dict] = None) -> None:
        """Trains the learner for ``total_timesteps`` env steps on the current reward.

        The states it visits are added to the learner-state buffer.
        """
        total_timesteps = total_timesteps or self.gen_train_timesteps
        learn_kwargs = dict(learn_kwargs or {})
        self._new_round()
        callbacks = [c for c in (self.gen_callback, learn_kwargs.pop("callback", None)) if c is not None]
        self._relabel_costs = []
        start = time.perf_counter()
        with self.logger.accumulate_means("gen"):
            context = contextlib.nullcontext()
            if self._relabeling:
                context = self._relabeling.round(total_timesteps, lambda: self._reward_version)
            with context:
                self.gen_algo.learn(
                    total_timesteps=total_timesteps, reset_num_timesteps=False, callback=callbacks, **learn_kwargs,
                )
        elapsed = time.perf_counter() - start
        trajectories, ep_lens = self.venv_buffering.pop_trajectories()
        self._check_fixed_horizon(ep_lens)
        self._last_round_features = self.features(trajectories)
        self.learner_buffer.add(self._last_round_features)
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

    def _check_fixed_horizon(self, horizons) -> None:
        """imitation's check that episodes are of one length, which absorbing states make unneeded."""
        if not self.settings.absorbing_states:
            super()._check_fixed_horizon(horizons)

    @property
    def rounds_done(self) -> int:
        """Rounds completed over this trainer's life, including those before a `load`."""
        return self._global_step

    def _log_round(self, learner_loss: float) -> None:
        newest = th.as_tensor(self._last_round_features[-N_COST_LOG_SAMPLES:], device=self.gen_algo.device)
        with th.no_grad():
            cost_learner = self._reward.base.cost(newest)
            cost_expert = self._reward.base.cost(self.expert_heldout[:N_COST_LOG_SAMPLES])
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

    def save(self, path: types.AnyPath, include_learner: bool = True) -> None:
        """Writes a checkpoint that `load` resumes training from to ``path``, atomically
        (`checkpoint.trainer_state` lists what it holds: the SB3 learner with its replay
        buffer unless ``include_learner=False``). Episodes in progress are not saved (SB3
        cannot save environments): a resumed run starts new ones."""
        checkpoint.write(path, checkpoint.trainer_state(self, include_learner), self.venv)

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

        :param demonstrations: the expert data of the run (its saved expert score is reused)
        :param venv: an environment of the task the checkpoint was made on
        :param gen_algo: the learner; when None, the one saved (with its replay buffer), on ``venv``
        :param kwargs: the trainer's other arguments, and settings that override the saved ones
        """
        return checkpoint.load_trainer(cls, path, demonstrations=demonstrations, venv=venv, gen_algo=gen_algo,
                                       **kwargs)


def _complete_episode_returns(trajectories: List[types.TrajectoryWithRew], ep_lens: List[int]) -> List[float]:
    """True returns of the episodes that ran wholly within this round.

    Finished fragments and episode lengths are recorded in the same order; a
    fragment that started in an earlier round is shorter than its episode.
    """
    finished = [t for t in trajectories if t.terminal]
    return [float(t.rews.sum()) for t, n in zip(finished, ep_lens) if len(t.acts) == n]


def _check_finite(value: Union[float, th.Tensor], what: str, round_: int) -> None:
    if not bool(th.isfinite(th.as_tensor(value)).all()):
        raise FloatingPointError(
            f"Non-finite {what} in round {round_}: stopping. Check the demonstrations and "
            "the environment's observations for NaN/inf or huge values, or lower the score learning rate.",
        )


class _FiniteRewards(BaseCallback):
    """Stops training on a non-finite true reward (``debug_use_ground_truth``), before the learner trains on it."""

    def _on_step(self) -> bool:
        if not np.isfinite(self.locals["rewards"]).all():
            raise FloatingPointError(
                f"Non-finite true reward at env step {self.num_timesteps}: stopping. Check the environment's rewards.",
            )
        return True


def _check_venv(venv: Any) -> None:
    if not isinstance(venv, vec_env.VecEnv):
        raise TypeError(
            f"venv is a {type(venv).__name__}, not a Stable-Baselines3 VecEnv: build one, e.g. "
            "`make_vec_env('Pendulum-v1', n_envs=1)` or `DummyVecEnv([lambda: env])`.",
        )


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


def default_round_length(gen_algo: base_class.BaseAlgorithm, n_envs: int) -> int:
    """Env steps per round when ``gen_train_timesteps`` is not given: one rollout of an
    on-policy learner, about ``DEFAULT_OFF_POLICY_ROUND`` of an off-policy one."""
    if isinstance(gen_algo, on_policy_algorithm.OnPolicyAlgorithm):
        return gen_algo.n_steps * n_envs
    return -(-DEFAULT_OFF_POLICY_ROUND // n_envs) * n_envs
