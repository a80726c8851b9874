"""Which observation coordinates are a body's position on an unbounded plane.

A locomotion expert's states spread along the track it runs on, so a diffusion
model of them scores a learner's state partly by how far it has come rather
than by how it moves. gymnasium's MuJoCo tasks leave these coordinates out of
the observation by default (``exclude_current_positions_from_observation``);
built without that, as seals' are, the observation is MuJoCo's state, all the
joint positions then all the velocities. Then the unbounded horizontal
positions are those of the model's own joints that let the body slide without
limit along the ground: a slide joint with a horizontal axis and no range, and
the x and y of a free joint. Nothing else is read from the task, not its name.
"""

from typing import List

import mujoco
import numpy as np
from gymnasium import spaces
from stable_baselines3.common import vec_env


def unbounded_positions(venv: vec_env.VecEnv) -> List[int]:
    """The coordinates of ``venv``'s observations that are unbounded horizontal positions.

    Empty unless the env is a MuJoCo one whose flat ``Box`` observation has the size of
    the state (``nq + nv``: the positions first), so that the rule never drops a
    coordinate it cannot name as a joint's position.
    """
    if not isinstance(venv.observation_space, spaces.Box):
        return []
    try:  # through the wrappers, without gymnasium's warning about reaching into them
        model = venv.env_method("get_wrapper_attr", "model", indices=0)[0]
    except AttributeError:
        return []
    if not isinstance(model, mujoco.MjModel) or venv.observation_space.shape != (model.nq + model.nv,):
        return []
    coordinates = []
    for joint in range(model.njnt):
        address = int(model.jnt_qposadr[joint])
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_FREE:
            coordinates += [address, address + 1]  # x, y (then z and the orientation)
        elif model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_SLIDE and not model.jnt_limited[joint]:
            if np.isclose(model.jnt_axis[joint][2], 0.0):
                coordinates.append(address)
    return coordinates
