"""Does DiffusionScoreIL's cost rank behaviour as the true return does? A check of the reward's shape without RL.

    python benchmarks/reward_ranking.py --env seals/Walker2d-v1 --expert experts/seals__Walker2d-v1 \
        --variant default --variant drop_x drop_state_coordinates=[0] --out reward-ranking-walker2d.json

A ladder of behaviours of known true return: the expert (its checkpoint in
``--expert``, as ``benchmark.experts`` leaves it) with Gaussian noise of growing
scale on its actions, and a random policy. For each rung the learner-state
buffer holds that rung's states alone, the trainer refits the learner score on
them as a training round does (``train_learner_score``: with today's defaults
from new weights, ``learner_fit_steps`` steps), the cost's timesteps are
profiled on them as the next round's are, and the cost of its states is
computed. A reward that can lead a learner up the
ladder costs every rung more than the one above it: the figures are Spearman's
rank correlation between episodes' true returns and their mean rewards (-cost),
over all episodes of all rungs, and the rungs' mean costs. Each ``--variant NAME
[ARG=VALUE ...]`` sets DiffusionScoreIL arguments as ``compare --set`` does
(``learner_fit_steps=1000`` for a longer refit).
"""

import argparse
import pathlib
from typing import Any, Dict, List

import numpy as np
import seals  # noqa: F401  (registers the seals/* tasks)
import torch as th
from imitation.data import types
from scipy import stats
from stable_baselines3 import SAC

from common import write_result

from sb3_diffusion_il import DiffusionScoreIL, data
from sb3_diffusion_il.benchmark import experts
from sb3_diffusion_il.benchmark.compare import trainer_settings
from sb3_diffusion_il.benchmark.tasks import get_task
from sb3_diffusion_il.buffers import LearnerStateBuffer
from sb3_diffusion_il.cost import PROFILE_STATES

RESULTS = pathlib.Path(__file__).parent / "results"
NOISE_SCALES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8)


def load_expert(env_id: str, work_dir: pathlib.Path):
    task = get_task(env_id)
    model = experts.load_model(work_dir, task.expert_algo, experts.make_venv(env_id, seed=0), task.expert_normalize)
    if task.expert_normalize:
        model.get_vec_normalize_env().training = False
    return model


def noisy(policy, scale: float, action_space, rng: np.random.Generator):
    def act(observations, states, episode_starts):
        actions, states = policy(observations, states, episode_starts)
        actions = actions + scale * rng.standard_normal(actions.shape)
        return np.clip(actions, action_space.low, action_space.high), states

    return act


def ladder(env_id: str, model, episodes: int, seed: int) -> Dict[str, List[types.TrajectoryWithRew]]:
    rng = np.random.default_rng(seed)
    expert = experts.deterministic_actions(model)
    rungs = {
        f"noise {scale}": experts.record(noisy(expert, scale, model.action_space, rng), env_id, episodes, seed + i)
        for i, scale in enumerate(NOISE_SCALES)
    }
    rungs["random"] = experts.record(None, env_id, episodes, seed + len(NOISE_SCALES))
    return rungs


def rank(trainer: DiffusionScoreIL, rungs: Dict[str, List[types.TrajectoryWithRew]]) -> Dict[str, Any]:
    """Each rung's cost after the trainer's own refit on that rung's states, and the rank correlation."""
    episode_returns, episode_rewards, rows = [], [], []
    for name, trajectories in rungs.items():
        per_episode = [trainer.features([t]) for t in trajectories]
        states = np.concatenate(per_episode)
        trainer.learner_buffer = LearnerStateBuffer(trainer.learner_buffer.capacity, states.shape[1])
        trainer.learner_buffer.add(states)
        trainer.train_learner_score()
        with th.no_grad():
            trainer.reward_train.base.resample_timesteps(trainer.learner_buffer.sample(PROFILE_STATES))
            costs = [trainer.reward_train.base.cost(th.as_tensor(x)).numpy() for x in per_episode]
        returns = [float(t.rews.sum()) for t in trajectories]
        episode_returns += returns
        episode_rewards += [-float(c.mean()) for c in costs]
        rows.append({"rung": name, "return_mean": float(np.mean(returns)),
                     "cost_mean": float(np.mean(np.concatenate(costs)))})
    return {"spearman": float(stats.spearmanr(episode_returns, episode_rewards).statistic), "rungs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True)
    parser.add_argument("--expert", type=pathlib.Path, required=True, help="the expert's checkpoint directory")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME [ARG=VALUE]")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per rung")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="file name in benchmarks/results")
    args = parser.parse_args()
    th.set_num_threads(1)
    rungs = ladder(args.env, load_expert(args.env, args.expert), args.episodes, args.seed)
    venv = experts.make_venv(args.env, args.seed)
    demonstrations = data.load_demonstrations(args.env)
    results = {}
    for name, *assignments in args.variant:
        settings = trainer_settings(assignments)
        trainer = DiffusionScoreIL(demonstrations=demonstrations, venv=venv, gen_algo=SAC("MlpPolicy", venv),
                                   seed=args.seed, **settings)
        trainer.pretrain_expert(progress_bar=False)
        results[name] = {"settings": settings, "learner_fit_steps": trainer.settings.learner_fit_steps,
                         **rank(trainer, rungs)}
        print(name, round(results[name]["spearman"], 3), flush=True)
    write_result(RESULTS / args.out, {
        "env_id": args.env, "episodes_per_rung": args.episodes, "seed": args.seed,
        "variants": results, "versions": experts.versions(),
    })


if __name__ == "__main__":
    main()
