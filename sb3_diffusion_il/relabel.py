"""Relabelling an SB3 replay buffer with the current reward.

Off-policy learners store rewards at collection time; here the reward changes
every round, so stored rewards go stale. While the context is active, every
minibatch the learner samples carries the current reward. Each stored
transition is scored at most once per reward version (a round): its reward is
written back into the buffer and reused by later minibatches, which is what
keeps an imitation reward cheap next to the learner's own update.

In a large buffer, a round's minibatches still draw (and would score) up to
as many distinct transitions as they draw in all, in small batches. A caller
may instead bound the scoring per round: it keeps each slot's version from one
round to the next, rescores only the stalest few, in large batches, and lets
the others keep a reward a few versions old.
"""

import contextlib
from typing import Callable, ContextManager, Iterator, Optional, Tuple, Union

import gymnasium as gym
import numpy as np
import torch as th
from imitation.rewards.reward_nets import RewardNet
from imitation.util import networks
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples, TrainFrequencyUnit
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

Samples = Union[ReplayBufferSamples, DictReplayBufferSamples]
RelabelFn = Callable[[Samples], th.Tensor]
# Slot mark of a transition not scored since it was stored.
UNSCORED = -1
# Draws per stored transition from which every transition is scored up front
# (then at most e^-2, 14%, of them go undrawn), in blocks of this many slots.
EAGER_DRAWS_PER_TRANSITION = 2
SCORE_BLOCK = 4096
# relabel_refresh="auto" recomputes the reward of one stored transition per this
# many replay draws of a round (benchmarks/overhead.py measures what it costs).
AUTO_REFRESH_DRAWS = 4


def env_actions(actions: th.Tensor, action_space: gym.Space) -> th.Tensor:
    """Replay-buffer actions in the env's units: SB3 stores Box actions rescaled to [-1, 1]."""
    if not isinstance(action_space, gym.spaces.Box):
        return actions
    low = th.as_tensor(action_space.low, device=actions.device, dtype=actions.dtype)
    high = th.as_tensor(action_space.high, device=actions.device, dtype=actions.dtype)
    return low + 0.5 * (actions + 1.0) * (high - low)


def reward_net_fn(reward_net: RewardNet, action_space: gym.Space) -> RelabelFn:
    """A relabel function giving any imitation ``RewardNet``'s reward (GAIL's, AIRL's, ours).

    The net runs in eval mode, as imitation's own ``predict`` does, so input
    normalisers do not update their statistics on replay data.
    """

    def reward(samples: Samples) -> th.Tensor:
        inputs = reward_net.preprocess(
            samples.observations,
            env_actions(samples.actions, action_space),
            samples.next_observations,
            samples.dones.reshape(-1),
        )
        # Switching modes walks every submodule: skip it when there is nothing to switch.
        mode = networks.evaluating(reward_net) if reward_net.training else contextlib.nullcontext()
        with th.no_grad(), mode:
            return reward_net(*inputs)

    return reward


def check_relabelable(buffer: object) -> None:
    """Raises unless ``buffer`` is an SB3 ``ReplayBuffer`` or ``DictReplayBuffer``, but not HER's.

    HER samples transitions of its own making (relabelled goals), which the stored
    rewards written back here would not match.
    """
    if not isinstance(buffer, (ReplayBuffer, DictReplayBuffer)) or isinstance(buffer, HerReplayBuffer):
        raise ValueError(
            f"The learner's replay buffer is a {type(buffer).__name__}, whose samples "
            "cannot be relabelled: use SB3's ReplayBuffer (the default of SAC, TD3, "
            "DDPG, DQN and TQC) or DictReplayBuffer (their default with Dict observations); "
            "HER buffers are not supported.",
        )


def stored_transitions(buffer: Union[ReplayBuffer, DictReplayBuffer], inds: np.ndarray) -> Samples:
    """The transitions in slots ``inds`` of every env, flattened slot-major, as stored (not normalised)."""
    def rows(a: np.ndarray) -> th.Tensor:
        return buffer.to_torch(a.reshape(len(inds) * buffer.n_envs, *a.shape[2:]))

    actions, dones, rewards = (
        rows(a) for a in (buffer.actions[inds], buffer.dones[inds] * (1 - buffer.timeouts[inds]), buffer.rewards[inds])
    )
    if isinstance(buffer, DictReplayBuffer):
        obs, next_obs = ({key: rows(a[inds]) for key, a in arrays.items()}
                         for arrays in (buffer.observations, buffer.next_observations))
        return DictReplayBufferSamples(obs, actions, next_obs, dones, rewards)
    if buffer.optimize_memory_usage:
        next_obs = buffer.observations[(inds + 1) % buffer.buffer_size]
    else:
        next_obs = buffer.next_observations[inds]
    return ReplayBufferSamples(rows(buffer.observations[inds]), actions, rows(next_obs), dones, rewards)


def new_scored_at(buffer: ReplayBuffer) -> np.ndarray:
    """Per-slot versions of ``buffer``'s stored rewards, none scored yet."""
    return np.full(buffer.buffer_size, UNSCORED, dtype=np.int64)


def stalest(scored_at: np.ndarray, current: int, n: int) -> np.ndarray:
    """Up to ``n`` slots whose rewards are oldest and not of version ``current``, in slot order."""
    slots = np.flatnonzero(scored_at != current)
    if len(slots) > n:
        slots = np.sort(slots[np.argpartition(scored_at[slots], n - 1)[:n]])
    return slots


@contextlib.contextmanager
def relabeled_sampling(
    buffer: Union[ReplayBuffer, DictReplayBuffer],
    reward_fn: RelabelFn,
    transform: Optional[Callable[[Samples], th.Tensor]] = None,
    version: Optional[Callable[[], int]] = None,
    expected_draws: Optional[int] = None,
    stores_current_rewards: bool = False,
    scored_at: Optional[np.ndarray] = None,
    refresh: Optional[int] = None,
) -> Iterator[None]:
    """Within the context, ``buffer``'s minibatches carry ``reward_fn``'s current rewards.

    A sampled transition not yet scored at the current ``version`` is scored and
    its reward written into ``buffer.rewards``; the stored reward is reused until
    ``version`` changes or the slot is overwritten. The buffer stays SB3's own
    class, so it saves and loads as usual (within the context through `unpatched`).

    :param reward_fn: rewards of a batch of transitions, shape ``(n,)``
    :param transform: the rewards ``(batch, 1)`` of each sampled minibatch (its samples
        carrying the current rewards), e.g. standardised per minibatch
    :param version: returns a non-negative number that changes whenever
        ``reward_fn`` does (default: it does not change within the context)
    :param expected_draws: how many transitions the learner's minibatches will
        draw within the context, if known; when it is at least twice the number
        stored, they are all scored on entry
    :param stores_current_rewards: the rewards the learner stores within the
        context are already ``reward_fn``'s current ones (it collects on an env
        wrapped with the same reward, as imitation's trainers do), so new
        transitions are not scored again
    :param scored_at: the version of each slot's stored reward, ``(buffer_size,)``
        (from ``new_scored_at``), kept by the caller from one context to the next
        so that rewards can outlive their version: then each entry scores the
        never-scored transitions and rescores the ``refresh`` stalest others, and
        a drawn transition is scored only if it was stored within the context.
        Past the first context, the cost of one stays fixed however large the
        buffer, and no reward is more than ``ceil(stored / refresh) - 1``
        versions old
    :param refresh: transitions rescored on each entry; required with ``scored_at``
    """
    check_relabelable(buffer)
    version = version or (lambda: 0)
    reuses = scored_at is not None
    if reuses and (refresh is None or refresh < 1):
        raise ValueError(f"refresh={refresh} must be a positive number of transitions when scored_at is given.")
    if scored_at is None:
        scored_at = new_scored_at(buffer)
    elif scored_at.shape != (buffer.buffer_size,):
        raise ValueError(f"scored_at has shape {scored_at.shape}, but the buffer has {buffer.buffer_size} slots.")
    original_add, original_get_samples = buffer.add, buffer._get_samples

    def score(slots: np.ndarray) -> None:
        rewards = reward_fn(stored_transitions(buffer, slots))
        buffer.rewards[slots] = rewards.reshape(len(slots), buffer.n_envs).cpu().numpy()
        scored_at[slots] = version()

    def add(*args, **kwargs) -> None:
        scored_at[buffer.pos] = version() if stores_current_rewards else UNSCORED
        original_add(*args, **kwargs)

    def get_samples(batch_inds: np.ndarray, env=None) -> Samples:
        drawn = scored_at[batch_inds]
        stale = np.unique(batch_inds[drawn == UNSCORED if reuses else drawn != version()])
        if len(stale):
            score(stale)
        samples = original_get_samples(batch_inds, env)
        return samples if transform is None else samples._replace(rewards=transform(samples))

    stored = buffer.size()
    if reuses:
        # The never-scored may hold any reward (the true one of a prefilled buffer).
        kept = scored_at[:stored]
        up_front = np.union1d(np.flatnonzero(kept == UNSCORED), stalest(kept, version(), refresh))
    elif expected_draws is not None and stored and expected_draws >= EAGER_DRAWS_PER_TRANSITION * stored:
        # Nearly every stored transition will be drawn this time: scoring them
        # up front in large batches is several times cheaper per transition
        # than scoring the few new ones of each minibatch.
        up_front = np.arange(stored)
    else:
        up_front = np.arange(0)
    for start in range(0, len(up_front), SCORE_BLOCK):
        score(up_front[start : start + SCORE_BLOCK])
    buffer.add = add  # type: ignore[method-assign]
    buffer._get_samples = get_samples  # type: ignore[method-assign]
    try:
        yield
    finally:
        del buffer.add, buffer._get_samples


@contextlib.contextmanager
def unpatched(buffer: Union[ReplayBuffer, DictReplayBuffer]) -> Iterator[None]:
    """``buffer`` without `relabeled_sampling`'s methods for the block, so that it pickles
    (SB3's ``save_replay_buffer``) while relabelled."""
    patched = {name: buffer.__dict__.pop(name) for name in ("add", "_get_samples") if name in buffer.__dict__}
    try:
        yield
    finally:
        buffer.__dict__.update(patched)


class RoundRelabeling:
    """Relabelling of an off-policy learner's replay minibatches with a reward that
    changes once a round: each round is one `relabeled_sampling` context.

    :param algo: the SB3 off-policy learner
    :param reward_fn: the current reward of stored transitions
    :param transform: the rewards of each relabelled minibatch, from its samples
    :param refresh: stored transitions rescored each round (the stalest first; the
        others keep their reward of an earlier round); ``"auto"``: one per
        ``AUTO_REFRESH_DRAWS`` transitions a round's minibatches draw; None: every
        drawn transition carries the round's reward
    """

    def __init__(
        self, algo: OffPolicyAlgorithm, reward_fn: RelabelFn, transform: Callable[[Samples], th.Tensor],
        refresh: Union[int, str, None],
    ):
        check_relabelable(algo.replay_buffer)
        self.algo, self.reward_fn, self.transform, self.refresh = algo, reward_fn, transform, refresh
        # The round whose reward each slot of the buffer holds, for the buffer it was kept for.
        self._scored_at: Optional[Tuple[object, np.ndarray]] = None

    def expected_draws(self, total_timesteps: int) -> Optional[int]:
        """Transitions the learner's minibatches draw in ``total_timesteps`` env steps.

        None where SB3 trains per episode, whose count is not known ahead.
        """
        algo = self.algo
        if algo.train_freq.unit != TrainFrequencyUnit.STEP:
            return None
        steps_per_rollout = algo.train_freq.frequency * algo.get_env().num_envs
        gradient_steps = algo.gradient_steps if algo.gradient_steps >= 0 else steps_per_rollout
        return total_timesteps // steps_per_rollout * gradient_steps * algo.batch_size

    def round(self, total_timesteps: int, version: Callable[[], int]) -> ContextManager[None]:
        """The context of a round of ``total_timesteps`` env steps whose reward is ``version()``'s.

        The learner collects on an env paying the round's reward, so new transitions
        are stored with their current reward.
        """
        buffer = self.algo.replay_buffer
        expected_draws = self.expected_draws(total_timesteps)
        refresh = self.refresh
        if refresh == "auto":
            refresh = None if expected_draws is None else max(1, expected_draws // AUTO_REFRESH_DRAWS)
        scored_at = None
        if refresh is not None:
            if self._scored_at is None or self._scored_at[0] is not buffer:
                self._scored_at = (buffer, new_scored_at(buffer))
            scored_at = self._scored_at[1]
        return relabeled_sampling(
            buffer, self.reward_fn, self.transform, version=version, expected_draws=expected_draws,
            stores_current_rewards=True, scored_at=scored_at, refresh=refresh,
        )
