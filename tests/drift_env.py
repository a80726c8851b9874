"""A small task whose episodes end early, and its scripted expert.

A point on a line drifts away from 0 (``x' = 1.1 x + 0.1 a + noise``); the episode
ends (terminated) once it leaves [-1, 1], or at ``HORIZON`` steps (truncated). The
true reward is 1 per step, so the true return is the episode's length. The expert
pulls the point back to 0 and never leaves; a random policy leaves within about
twenty steps.
"""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

HORIZON = 50
NOISE = 0.02


class DriftEnv(gym.Env):
    observation_space = spaces.Box(-2.0, 2.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.x = self.np_random.uniform(-0.2, 0.2, 1).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.t += 1
        drift = 1.1 * self.x + 0.1 * np.clip(action, -1, 1) + NOISE * self.np_random.standard_normal(1)
        self.x = np.clip(drift, -2, 2).astype(np.float32)
        return self.x.copy(), 1.0, bool(abs(self.x[0]) > 1), self.t >= HORIZON, {}


def expert_states(n_episodes: int, seed: int = 0) -> np.ndarray:
    """The states of ``n_episodes`` episodes of the expert, which pulls the point back (``a = -2x``)."""
    env, states = DriftEnv(), []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            states.append(obs)
            obs, _, terminated, truncated, _ = env.step(np.clip(-2 * obs, -1, 1))
            done = terminated or truncated
    return np.array(states)
