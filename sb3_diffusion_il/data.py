"""Demonstrations: any of imitation's types to checked feature arrays, and the bundled files.

A *feature* is what the diffusion models see for one transition ``(s, a, s')``:

- ``"state"``: the state ``s'`` the transition reaches (or the state itself, for
  data that only holds states). Needs no actions: learning from observation.
- ``"state_action"``: ``[s, a]``.
- ``"state_next_state"``: ``[s, s']``.
"""

import hashlib
import io
import json
import pathlib
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
import torch as th
from imitation.data import rollout, types

from sb3_diffusion_il import files, flatten

CONDITIONINGS = ("state", "state_action", "state_next_state")
# Fewest demonstration states accepted: one state is no distribution.
MIN_STATES = 2

DEMO_DIR = pathlib.Path(__file__).parent / "demos"

AnyDemonstrations = Union[
    np.ndarray,
    types.TransitionsMinimal,
    Sequence[types.Trajectory],
    Iterable[types.TransitionMapping],
]


def check_conditioning(conditioning: str) -> None:
    if conditioning not in CONDITIONINGS:
        raise ValueError(
            f"Unknown conditioning {conditioning!r}: choose one of {CONDITIONINGS}.",
        )


def features(conditioning: str, obs, acts, next_obs, state_coordinates: Optional[Sequence[int]] = None):
    """The diffusion input for a batch of transitions (NumPy arrays or tensors).

    :param conditioning: one of ``CONDITIONINGS``
    :param obs: states ``s``, shape ``(n, obs_dim)``
    :param acts: actions ``a``, shape ``(n, act_dim)``, or None when not needed
    :param next_obs: next states ``s'``, or None for data that holds states only
    :param state_coordinates: the coordinates of a state that are diffused (None: all)
    :return: features, shape ``(n, feature_dim)``
    """
    check_conditioning(conditioning)
    if state_coordinates is not None:
        obs = obs[:, list(state_coordinates)]
        next_obs = None if next_obs is None else next_obs[:, list(state_coordinates)]
    if conditioning == "state":
        return obs if next_obs is None else next_obs
    second = acts if conditioning == "state_action" else next_obs
    if isinstance(obs, th.Tensor):
        return th.cat([obs, second.reshape(len(second), -1).to(obs.dtype)], dim=1)
    return np.concatenate([obs, np.asarray(second, obs.dtype).reshape(len(second), -1)], 1)


@dataclass(frozen=True)
class DemonstrationArrays:
    """Demonstrations flattened to arrays; ``acts``/``next_obs`` are None when absent."""

    obs: np.ndarray
    acts: Optional[np.ndarray]
    next_obs: Optional[np.ndarray]

    def features(self, conditioning: str, state_coordinates: Optional[Sequence[int]] = None) -> np.ndarray:
        """Features for ``conditioning`` (see `features`), raising if the data lacks what it needs."""
        check_conditioning(conditioning)
        if conditioning == "state_action" and self.acts is None:
            raise ValueError(
                "conditioning='state_action' needs demonstrations with actions, "
                "but these hold states only: pass trajectories or transitions with "
                "actions, or use conditioning='state'.",
            )
        if conditioning == "state_next_state" and self.next_obs is None:
            raise ValueError(
                "conditioning='state_next_state' needs demonstrations with next "
                "states (trajectories or `Transitions`), but these have none: "
                "pass trajectories, or use conditioning='state'.",
            )
        return features(conditioning, self.obs, self.acts, self.next_obs, state_coordinates).astype(
            np.float32,
        )


def _batches_to_arrays(batches: Iterable[types.TransitionMapping]) -> DemonstrationArrays:
    batches = list(batches)
    for batch in batches:
        if not isinstance(batch, dict) or "obs" not in batch:
            raise TypeError(
                "Demonstrations given as an iterable must yield imitation "
                "`Trajectory` objects or transition dicts with an 'obs' key, got "
                f"{type(batch).__name__}.",
            )

    def to_numpy(value: Any) -> Union[np.ndarray, types.DictObs]:
        if isinstance(value, (dict, types.DictObs)):
            return types.DictObs({k: np.asarray(th.as_tensor(v).cpu()) for k, v in value.items()})
        return np.asarray(th.as_tensor(value).cpu())

    def stack(key: str) -> Optional[Union[np.ndarray, types.DictObs]]:
        if not all(key in b for b in batches):
            return None
        return types.concatenate_maybe_dictobs([to_numpy(b[key]) for b in batches])

    return DemonstrationArrays(stack("obs"), stack("acts"), stack("next_obs"))


def to_arrays(
    demonstrations: Optional[AnyDemonstrations],
    observation_space: Optional[gym.Space] = None,
    action_space: Optional[gym.Space] = None,
) -> DemonstrationArrays:
    """Converts every demonstration type imitation accepts, or an array of states.

    :param demonstrations: a sequence of ``Trajectory``, ``Transitions``,
        ``TransitionsMinimal``, an iterable of transition dicts, or an array of
        states of shape ``(n, *obs_shape)``
    :param observation_space: the env's; when given, states are checked against it
        and encoded as flat float vectors (`flatten`: one-hot for discrete spaces,
        Dict entries concatenated), as are actions with ``action_space``
    :return: the flattened, validated arrays
    """
    if demonstrations is None:
        raise ValueError(
            "No demonstrations given: pass expert trajectories, transitions or an "
            "array of expert states (e.g. `sb3_diffusion_il.load_demonstrations"
            "('Pendulum-v1')`).",
        )
    if isinstance(demonstrations, (np.ndarray, th.Tensor)):
        obs = np.asarray(demonstrations.cpu() if isinstance(demonstrations, th.Tensor) else demonstrations)
        arrays = DemonstrationArrays(obs, None, None)
    elif isinstance(demonstrations, (dict, types.DictObs)) and "obs" not in demonstrations:
        # States of a Dict observation space, as a dict of arrays (one per key).
        arrays = DemonstrationArrays(types.DictObs({k: np.asarray(v) for k, v in demonstrations.items()}), None, None)
    elif isinstance(demonstrations, dict):  # one batch of transitions
        arrays = _batches_to_arrays([demonstrations])
    elif isinstance(demonstrations, types.TransitionsMinimal):
        arrays = DemonstrationArrays(
            demonstrations.obs,
            demonstrations.acts,
            getattr(demonstrations, "next_obs", None),
        )
    else:
        items = list(demonstrations)
        if not items:
            raise ValueError(
                "No demonstrations given: the sequence is empty. Pass expert trajectories, transitions "
                "or an array of expert states (e.g. `sb3_diffusion_il.load_demonstrations('Pendulum-v1')`).",
            )
        if all(isinstance(t, types.Trajectory) for t in items):
            _check_trajectories(items)
            flat = rollout.flatten_trajectories(items)
            arrays = DemonstrationArrays(flat.obs, flat.acts, flat.next_obs)
        else:
            arrays = _batches_to_arrays(items)
    for name in ("obs", "acts", "next_obs"):
        _check_dtype(name, getattr(arrays, name))
    if observation_space is not None:
        arrays = _flattened(arrays, observation_space, action_space)
    _check_arrays(arrays)
    return arrays


def _flattened(
    arrays: DemonstrationArrays, observation_space: gym.Space, action_space: Optional[gym.Space],
) -> DemonstrationArrays:
    """The arrays with states (and actions) as flat float vectors of their spaces."""
    flatten.check_batch(observation_space, arrays.obs)
    if arrays.next_obs is not None:
        flatten.check_batch(observation_space, arrays.next_obs, "Demonstration next states")
    acts = arrays.acts
    if acts is not None and action_space is not None:
        flatten.check_batch(action_space, acts, "Demonstration actions")
        acts = flatten.flatten_numpy(action_space, acts)
    next_obs = None if arrays.next_obs is None else flatten.flatten_numpy(observation_space, arrays.next_obs)
    return DemonstrationArrays(flatten.flatten_numpy(observation_space, arrays.obs), acts, next_obs)


def _check_trajectories(trajectories: Sequence[types.Trajectory]) -> None:
    dict_obs = {isinstance(traj.obs, types.DictObs) for traj in trajectories}
    if len(dict_obs) > 1:
        raise ValueError(
            "Some trajectories have Dict observations and others arrays: demonstrations "
            "must all come from the same task.",
        )


def _check_dtype(name: str, value: Any) -> None:
    """Raises unless ``value`` (an array, a DictObs or None) holds real numbers."""
    if value is None:
        return
    for key, array in (value.items() if isinstance(value, types.DictObs) else [(None, value)]):
        dtype = np.asarray(array).dtype
        real = (np.issubdtype(dtype, np.number) or dtype == np.bool_) and not np.issubdtype(dtype, np.complexfloating)
        if not real:
            where = f"{name}[{key!r}]" if key is not None else name
            raise ValueError(
                f"Demonstration {where} must hold real numbers, got dtype {dtype}: "
                "convert them, e.g. with `np.asarray(x, dtype=np.float32)`.",
            )


def _check_arrays(arrays: DemonstrationArrays) -> None:
    if isinstance(arrays.obs, types.DictObs):
        raise ValueError(
            "Dict observations are encoded with the env's observation space: pass "
            "observation_space to `to_arrays` (DiffusionScoreIL does).",
        )
    if len(arrays.obs) == 0:
        raise ValueError("No demonstrations given: the demonstrations hold 0 states.")
    if len(arrays.obs) < MIN_STATES:
        raise ValueError(
            f"The demonstrations hold {len(arrays.obs)} state: a score network needs at "
            f"least {MIN_STATES} to fit a distribution; pass more expert data.",
        )
    if arrays.obs.ndim != 2:
        raise ValueError(
            f"Demonstration states must be vectors, got shape {arrays.obs.shape[1:]}:"
            " pass the env's observation_space to encode them (DiffusionScoreIL does).",
        )
    for name in ("obs", "acts", "next_obs"):
        value = getattr(arrays, name)
        if value is None:
            continue
        n_bad = int(np.size(value) - np.isfinite(value).sum())
        if n_bad:
            raise ValueError(
                f"Demonstration {name} hold {n_bad} non-finite values (NaN or inf): "
                "drop or repair those transitions before training.",
            )


# Bundled demonstration files -------------------------------------------------


def _slug(env_id: str) -> str:
    return env_id.replace("/", "__")


def demo_path(env_id: str, directory: Optional[pathlib.Path] = None) -> pathlib.Path:
    return (directory or DEMO_DIR) / f"{_slug(env_id)}.npz"


def manifest_path(env_id: str, directory: Optional[pathlib.Path] = None) -> pathlib.Path:
    return (directory or DEMO_DIR) / f"{_slug(env_id)}.json"


def bundled_env_ids() -> List[str]:
    return sorted(json.loads(p.read_text())["env_id"] for p in DEMO_DIR.glob("*.json"))


def save_trajectories(path: pathlib.Path, trajectories: Sequence[types.TrajectoryWithRew]) -> str:
    """Writes trajectories as compressed float32 arrays; returns the file's sha256."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        obs=np.concatenate([t.obs for t in trajectories]).astype(np.float32),
        acts=np.concatenate([t.acts for t in trajectories]).astype(np.float32),
        rews=np.concatenate([t.rews for t in trajectories]).astype(np.float32),
        lengths=np.array([len(t.acts) for t in trajectories], dtype=np.int64),
        terminal=np.array([t.terminal for t in trajectories], dtype=bool),
    )
    data = buf.getvalue()
    files.atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_trajectories(path: pathlib.Path, sha256: Optional[str] = None) -> List[types.TrajectoryWithRew]:
    """Reads a file written by `save_trajectories`, refusing a corrupt or partial one."""
    path = pathlib.Path(path)
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(
            f"Demonstration file {path} does not match its manifest's checksum: it is "
            "corrupt or truncated. Reinstall the package or regenerate it with "
            "`python -m sb3_diffusion_il.benchmark.experts`.",
        )
    try:
        with np.load(path) as f:
            arrays: Dict[str, Any] = {k: f[k] for k in ("obs", "acts", "rews", "lengths", "terminal")}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise ValueError(f"Demonstration file {path} is corrupt or truncated: {e}") from e
    lengths = arrays["lengths"]
    if lengths.sum() != len(arrays["acts"]) or lengths.sum() + len(lengths) != len(arrays["obs"]):
        raise ValueError(f"Demonstration file {path} is inconsistent: lengths do not match.")
    trajectories = []
    obs_start = act_start = 0
    for length, terminal in zip(lengths, arrays["terminal"]):
        trajectories.append(
            types.TrajectoryWithRew(
                obs=arrays["obs"][obs_start : obs_start + length + 1],
                acts=arrays["acts"][act_start : act_start + length],
                rews=arrays["rews"][act_start : act_start + length],
                infos=None,
                terminal=bool(terminal),
            ),
        )
        obs_start += length + 1
        act_start += length
    return trajectories


def _manifest(env_id: str) -> Dict[str, Any]:
    path = manifest_path(env_id)
    if not path.exists():
        try:
            check_env_id(env_id)
        except ValueError:
            raise ValueError(
                f"No task {env_id!r} is registered with gymnasium (check the name and version; seals' tasks "
                f"are 'seals/NAME-vN'). Bundled demonstrations: {bundled_env_ids()}.",
            ) from None
        raise ValueError(
            f"{env_id!r} is a gymnasium task, but no expert demonstrations for it are bundled (bundled: "
            f"{bundled_env_ids()}). Make them with `sb3-diffusion-il make-demos {env_id} --out-dir DIR` (it "
            "trains an expert first) and load them with `sb3_diffusion_il.data.read_trajectories`.",
        )
    return json.loads(path.read_text())


def check_env_id(env_id: str) -> None:
    """Raises ValueError, with gymnasium's hint at close names, unless ``env_id`` is a registered task."""
    if env_id.startswith("seals/"):
        import seals  # noqa: F401  (registers the seals/* ids)
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown task {env_id!r}: {e}") from None



def load_demonstrations(env_id: str, n_episodes: Optional[int] = None) -> List[types.TrajectoryWithRew]:
    """Bundled expert demonstrations for ``env_id``, loaded offline.

    :param env_id: a bundled task id, see `bundled_env_ids`
    :param n_episodes: the first ``n_episodes`` episodes; all when None
    :return: imitation ``TrajectoryWithRew`` objects with true rewards
    """
    manifest = _manifest(env_id)
    trajectories = read_trajectories(demo_path(env_id), manifest["sha256"])
    if n_episodes is not None:
        if not 1 <= n_episodes <= len(trajectories):
            raise ValueError(
                f"n_episodes={n_episodes}, but {env_id} bundles {len(trajectories)} "
                "episodes: ask for between 1 and that many.",
            )
        trajectories = trajectories[:n_episodes]
    return trajectories


def expert_stats(env_id: str) -> Dict[str, Any]:
    """The manifest of a bundled task: expert and random returns, budget, versions."""
    return _manifest(env_id)


def normalized_return(env_id: str, value: float) -> float:
    """``(value - random) / (expert - random)``: 0 is a random policy, 1 the expert."""
    stats = _manifest(env_id)
    expert, random = stats["expert_return_mean"], stats["random_return_mean"]
    return (value - random) / (expert - random)
