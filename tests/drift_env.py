"""A small task whose episodes end early, and its scripted expert.

A point on a line drifts away from 0 (``x' = 1.1 x + 0.1 a + noise``); the episode
ends (terminated) once it leaves [-1, 1], or at ``HORIZON`` steps (truncated). The
expert holds the point at ``TARGET`` and never leaves; a random policy leaves
within about twenty steps. The true reward, ``1 - |x - TARGET|`` per step, pays for
lasting and more for lasting where the expert does.
"""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

HORIZON = 50
NOISE = 0.02
TARGET = 0.5


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
        reward = 1.0 - abs(float(self.x[0]) - TARGET)
        return self.x.copy(), reward, bool(abs(self.x[0]) > 1), self.t >= HORIZON, {}


def expert_action(obs: np.ndarray) -> np.ndarray:
    """Back towards ``TARGET``, against the drift."""
    return np.clip(-obs - 5 * (obs - TARGET), -1, 1)


def rollouts(policy, n_episodes: int, seed: int = 0):
    """The states and the true returns of ``n_episodes`` episodes of ``policy`` (observation -> action)."""
    env, states, returns = DriftEnv(), [], []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            states.append(obs)
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return np.array(states), np.array(returns)


def expert_states(n_episodes: int, seed: int = 0) -> np.ndarray:
    """The states of ``n_episodes`` episodes of the expert."""
    return rollouts(expert_action, n_episodes, seed)[0]
