"""Observations and actions of every space imitation's reward nets take, as flat float vectors.

What the diffusion models see of a value of a space:

- ``Box`` of any shape: its values, flattened;
- ``Discrete`` and ``MultiDiscrete``: one-hot codes, ``MultiBinary``: its 0/1
  values (SB3's ``preprocess_obs``, as imitation's reward nets encode them);
- ``Dict``, nested too: its entries flattened and concatenated in the space's key
  order (gymnasium sorts the keys of a ``Dict`` built from a plain dict).

Image observations, ``Tuple`` and ``Sequence`` spaces are refused with an error
that says how to get a supported space.
"""

from typing import Any, Mapping, Optional, Union

import numpy as np
import torch as th
from gymnasium import spaces
from imitation.data import types
from stable_baselines3.common.preprocessing import is_image_space, preprocess_obs

SUPPORTED = (
    "Box (flat or of any shape, but not images), Discrete, MultiDiscrete, MultiBinary, "
    "and Dict of these (nested too)"
)
Batch = Union[np.ndarray, th.Tensor, Mapping[str, Any], types.DictObs]
_LEAVES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_space(space: spaces.Space, what: str = "Observation") -> None:
    """Raises ValueError, naming what is supported, unless ``flatten`` can encode ``space``."""
    if isinstance(space, spaces.Dict):
        for key, subspace in space.spaces.items():
            check_space(subspace, f"{what} entry {key!r}")
        return
    if isinstance(space, (spaces.Tuple, spaces.Sequence)):
        raise ValueError(
            f"{what} space {space} is a {type(space).__name__}, which is not supported: wrap the "
            "env in gymnasium's FlattenObservation (or a wrapper that turns it into a Dict). "
            f"Supported: {SUPPORTED}.",
        )
    if isinstance(space, spaces.Box) and is_image_space(space, check_channels=False):
        raise ValueError(
            f"{what} space {space} holds images, which are not supported yet (they need a "
            f"convolutional score network). Supported: {SUPPORTED}.",
        )
    if not isinstance(space, _LEAVES):
        raise ValueError(f"{what} space {space} is not supported. Supported: {SUPPORTED}.")


def flat_dim(space: spaces.Space) -> int:
    """The length of ``flatten``'s rows for ``space``."""
    if isinstance(space, spaces.Dict):
        return sum(flat_dim(subspace) for subspace in space.spaces.values())
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    return int(np.prod(space.shape))


def binary_coordinates(space: spaces.Space) -> np.ndarray:
    """Which of ``flatten``'s coordinates are one-hot or binary (0 or 1), as a bool mask."""
    if isinstance(space, spaces.Dict):
        return np.concatenate([binary_coordinates(subspace) for subspace in space.spaces.values()])
    return np.full(flat_dim(space), not isinstance(space, spaces.Box))


def check_batch(space: spaces.Space, x: Batch, what: str = "Demonstration states") -> None:
    """Raises ValueError, naming the first ``Dict`` key or the shape that differs, unless
    ``x`` is a batch ``(n, ...)`` of values of ``space``."""
    if isinstance(space, spaces.Dict):
        entries = _entries(x, what)
        keys = list(space.spaces) + [k for k in entries if k not in space.spaces]
        for key in keys:
            if key not in entries or key not in space.spaces:
                where = "the env's observation space" if key not in entries else "these"
                raise ValueError(
                    f"{what} differ from the env's observations at key {key!r}: only {where} "
                    f"{'has' if key not in entries else 'have'} it (env keys {list(space.spaces)}, "
                    f"given {list(entries)}). Record demonstrations on the same task.",
                )
            check_batch(space.spaces[key], entries[key], f"{what} at key {key!r}")
        return
    shape = tuple(np.shape(x))[1:]
    expected = [space.shape] + ([(1,)] if isinstance(space, spaces.Discrete) else [])
    if shape not in expected:
        raise ValueError(
            f"{what} have shape {shape}, but the env's have shape {space.shape} ({space}): "
            "demonstrations must come from the same task.",
        )


def flatten(space: spaces.Space, x: Batch, device: Optional[th.device] = None) -> th.Tensor:
    """A batch ``(n, ...)`` of values of ``space`` as float32 rows ``(n, flat_dim(space))``."""
    if isinstance(space, spaces.Dict):
        entries = _entries(x, "Observations")
        return th.cat([flatten(subspace, entries[key], device) for key, subspace in space.spaces.items()], dim=1)
    # A copy of NumPy input: torch warns on read-only arrays (loaded demonstrations).
    t = x.to(device) if isinstance(x, th.Tensor) else th.from_numpy(np.array(x)).to(device)
    return preprocess_obs(t, space, normalize_images=False).reshape(len(t), flat_dim(space)).float()


def flatten_numpy(space: spaces.Space, x: Batch) -> np.ndarray:
    """`flatten`, as a NumPy array."""
    return flatten(space, x).cpu().numpy()


def _entries(x: Batch, what: str) -> Mapping[str, Any]:
    if isinstance(x, types.DictObs):
        return x.unwrap()
    if isinstance(x, Mapping):
        return x
    raise ValueError(
        f"{what} are a {type(x).__name__}, but the env's observation space is a Dict: "
        "pass them as dicts of arrays or imitation's DictObs, as rollouts record them.",
    )
