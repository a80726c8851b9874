"""A fingerprint of training, to check that a restructuring keeps behaviour bit for bit.

    python benchmarks/same_behaviour.py before.pt        # on the old code
    python benchmarks/same_behaviour.py after.pt         # on the new code
    python benchmarks/same_behaviour.py --compare before.pt after.pt

Two rounds of SB3's SAC on Pendulum-v1 and two of PPO on seals/CartPole-v0, seed 0,
small budgets (about half a minute on one core); the fingerprint holds every
parameter of the policy and both score networks, and SAC's stored rewards.
"""

import argparse
import sys

import seals  # noqa: F401  (registers seals/CartPole-v0)
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import set_random_seed

from sb3_diffusion_il import DiffusionScoreIL, data

RUNS = (
    ("sac", SAC, "Pendulum-v1", dict(learning_starts=200, batch_size=64), 500),
    ("ppo", PPO, "seals/CartPole-v0", dict(n_steps=256, batch_size=64), None),
)


def fingerprint() -> dict:
    out = {}
    for name, algo, env_id, kwargs, round_steps in RUNS:
        set_random_seed(0)
        venv = make_vec_env(env_id, n_envs=1, seed=0)
        learner = algo("MlpPolicy", venv, seed=0, **kwargs)
        trainer = DiffusionScoreIL(demonstrations=data.load_demonstrations(env_id, n_episodes=2), venv=venv,
                                   gen_algo=learner, expert_fit_steps=200, gen_train_timesteps=round_steps, seed=0)
        trainer.train(2 * trainer.gen_train_timesteps, progress_bar=False)
        for part, module in (("policy", learner.policy), ("expert", trainer.expert_score_net),
                             ("learner", trainer.learner_score_net)):
            out.update({f"{name}/{part}/{k}": v.clone() for k, v in module.state_dict().items()})
        if name == "sac":
            out["sac/replay_rewards"] = th.as_tensor(learner.replay_buffer.rewards[:learner.replay_buffer.size()])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="where to write the fingerprint, or two to compare")
    parser.add_argument("--compare", action="store_true", help="compare two fingerprints")
    args = parser.parse_args()
    th.set_num_threads(1)
    if not args.compare:
        th.save(fingerprint(), args.paths[0])
        return
    a, b = (th.load(path) for path in args.paths)
    differ = sorted(set(a) ^ set(b)) + [k for k in a if k in b and not th.equal(a[k], b[k])]
    print("identical" if not differ else f"differ: {differ[:10]}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
