"""A small goal-conditioned task with a Dict observation, and its scripted expert.

A point in the plane moves by up to ``STEP`` per step towards wherever the action
points; the observation holds its position (``"observation"``) and the goal
(``"desired_goal"``), as goal-conditioned robotics tasks do. The reward is minus
the distance to the goal; every episode lasts ``HORIZON`` steps.
"""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

HORIZON = 30
STEP = 0.1


class PointGoalEnv(gym.Env):
    observation_space = spaces.Dict({
        "observation": spaces.Box(-2.0, 2.0, (2,), np.float32),
        "desired_goal": spaces.Box(-1.0, 1.0, (2,), np.float32),
    })
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.position = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.goal = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.position = np.clip(self.position + STEP * np.clip(action, -1, 1), -2, 2).astype(np.float32)
        reward = -float(np.linalg.norm(self.position - self.goal))
        return self._obs(), reward, False, self.t >= HORIZON, {}

    def _obs(self):
        return {"observation": self.position.copy(), "desired_goal": self.goal.copy()}


def expert_actions(obs) -> np.ndarray:
    """Straight to the goal at full speed, then stay (a batch of Dict observations)."""
    return np.clip((obs["desired_goal"] - obs["observation"]) / STEP, -1, 1)
