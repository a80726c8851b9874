"""imitation's GAIL, AIRL and BC as baselines, with the learner DiffusionScoreIL gets,
and that learner on the task's true reward (the ceiling, and the sample-efficiency reference).

imitation's adversarial trainers never relabel an off-policy learner's replay
buffer, so SAC would train on discriminator rewards from earlier rounds. Here
they can run with the same relabelling DiffusionScoreIL uses (`relabeled`), so
the comparison is of the reward, not of how stale it is.
"""

import contextlib
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np
from imitation.algorithms import base, bc
from imitation.algorithms.adversarial.airl import AIRL
from imitation.algorithms.adversarial.common import AdversarialTrainer
from imitation.algorithms.adversarial.gail import GAIL
from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
from imitation.util.networks import RunningNorm
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_diffusion_il import checkpoint, relabel

ADVERSARIAL = {"gail": GAIL, "airl": AIRL}


def make_adversarial(method: str, *, state_only: bool = True, **trainer_kwargs) -> AdversarialTrainer:
    """imitation's GAIL or AIRL with its default reward network.

    :param method: ``"gail"`` or ``"airl"``
    :param state_only: the discriminator's reward sees states, not actions (AIRL
        still needs expert actions for the policy's log-probabilities)
    :param trainer_kwargs: ``AdversarialTrainer`` keyword arguments less ``reward_net``
    """
    if method not in ADVERSARIAL:
        raise ValueError(f"Unknown adversarial method {method!r}: choose one of {sorted(ADVERSARIAL)}.")
    venv: VecEnv = trainer_kwargs["venv"]
    net_cls = BasicShapedRewardNet if method == "airl" else BasicRewardNet
    reward_net = net_cls(
        venv.observation_space,
        venv.action_space,
        use_action=not state_only,
        normalize_input_layer=RunningNorm,
    )
    return ADVERSARIAL[method](reward_net=reward_net, **trainer_kwargs)


@contextlib.contextmanager
def relabeled(trainer: AdversarialTrainer) -> Iterator[bool]:
    """While active, an off-policy learner samples minibatches with the current ``reward_train``.

    Stored transitions are scored again after every discriminator update.

    :return: whether relabelling applies (False for on-policy learners)
    """
    algo = trainer.gen_algo
    if not isinstance(algo, OffPolicyAlgorithm):
        yield False
        return
    reward = relabel.reward_net_fn(trainer.reward_train, trainer.venv.action_space)
    # imitation counts discriminator updates in `_disc_step` (1.0.x); the reward changes with each.
    with relabel.relabeled_sampling(
        algo.replay_buffer, reward, version=lambda: trainer._disc_step, stores_current_rewards=True,
    ):
        yield True


def make_bc(venv: VecEnv, demonstrations: base.AnyTransitions, seed: int, **bc_kwargs) -> bc.BC:
    """imitation's behavioural cloning (needs expert actions)."""
    return bc.BC(
        observation_space=venv.observation_space,
        action_space=venv.action_space,
        demonstrations=demonstrations,
        rng=np.random.default_rng(seed),
        **bc_kwargs,
    )


class TrueReward:
    """The learner on the env's own reward, trained in rounds as the imitation trainers
    train it, so that the harness evaluates and checkpoints it the same way.

    :param gen_algo: the SB3 learner, on the task's env
    :param gen_train_timesteps: env steps per round (None: one rollout of an on-policy learner)
    """

    def __init__(self, gen_algo: BaseAlgorithm, gen_train_timesteps: Optional[int] = None):
        self.gen_algo = gen_algo
        self.venv = gen_algo.get_env()
        self.gen_train_timesteps = gen_train_timesteps or gen_algo.n_steps * self.venv.num_envs

    def train(self, total_timesteps: int, callback: Optional[Callable[[int], None]] = None) -> None:
        """Rounds of ``gen_train_timesteps`` while another fits in ``total_timesteps``,
        ``callback(round)`` after each."""
        for round_ in range(total_timesteps // self.gen_train_timesteps):
            self.gen_algo.learn(self.gen_train_timesteps, reset_num_timesteps=False)
            if callback:
                callback(round_)


Trainer = Union[TrueReward, AdversarialTrainer]


def state_of(trainer: Trainer) -> Dict[str, Any]:
    """What resumes a baseline where it stopped: the learner with its replay buffer, the
    process-wide random states, and an adversarial trainer's reward net and optimiser."""
    state = {"learner": checkpoint.learner_state(trainer.gen_algo), "global_rng": checkpoint.global_rng_state()}
    if isinstance(trainer, AdversarialTrainer):
        state.update(
            reward_net=trainer._reward_net.state_dict(), disc_opt=trainer._disc_opt.state_dict(),
            disc_step=trainer._disc_step, global_step=trainer._global_step,
        )
    return state


def restore(trainer: Trainer, state: Dict[str, Any]) -> None:
    """Puts `state_of`'s state back into a trainer built on the learner restored from it."""
    if isinstance(trainer, AdversarialTrainer):
        trainer._reward_net.load_state_dict(state["reward_net"])
        trainer._disc_opt.load_state_dict(state["disc_opt"])
        trainer._disc_step, trainer._global_step = state["disc_step"], state["global_step"]
    checkpoint.set_global_rng_state(state["global_rng"])
