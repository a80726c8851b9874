"""Every setting of DiffusionScoreIL's method, once: its default, what it may be, what it does.

`Settings` is the one list. The trainer takes its fields as keyword arguments
and validates them here; checkpoints save and load them with `to_dict` and
`from_dict`; the command line's flags (`add_flags`), the benchmark harness's
recorded settings and the settings table of ``docs/settings.md``
(`markdown_table`) are derived from it. What each default rests on is measured
in ``docs/settings.md`` and ``docs/benchmarks.md``.
"""

import argparse
import dataclasses
import importlib
import numbers
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

import torch as th

from sb3_diffusion_il.cost import PRECISIONS
from sb3_diffusion_il.data import CONDITIONINGS
# What drop_state_coordinates may name instead of indices.
UNBOUNDED_POSITIONS = "unbounded_positions"
AUTO = "auto"


def check_int(name: str, value: Any, minimum: int = 1) -> None:
    """Raises unless ``value`` is an integer (not a bool or a float) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer (a whole number of at least {minimum}).")
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}.")


def _at_least(minimum: int = 1) -> Callable[[str, Any], None]:
    return lambda name, value: check_int(name, value, minimum)


def _one_of(choices: Sequence[str], *others: Any) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in others and value not in choices:
            shown = list(choices) + [repr(o) for o in others]
            raise ValueError(f"{name}={value!r} is not one of {shown}.")

    return check


def _check_drop(name: str, value: Any) -> None:
    if isinstance(value, str):
        if value != UNBOUNDED_POSITIONS:
            raise ValueError(f"{name}={value!r}: give the coordinates' indices or {UNBOUNDED_POSITIONS!r}.")
        return
    wrong = [i for i in value if isinstance(i, bool) or not isinstance(i, numbers.Integral)]
    if wrong:
        raise TypeError(f"{name}={list(value)}: {wrong} are not coordinate indices (integers).")


def _check_mapping(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}={value!r} must be a dict of keyword arguments.")


def _check_optimizer(name: str, value: Any) -> None:
    if not (isinstance(value, type) and issubclass(value, th.optim.Optimizer)):
        raise TypeError(f"{name}={value!r} must be a torch.optim.Optimizer class, e.g. torch.optim.Adam.")


def _check_refresh(name: str, value: Any) -> None:
    if value not in (AUTO, None):
        check_int(name, value)


def _check_quantile(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name}={value!r} must be a quantile strictly between 0 and 1, or None for the plain -c.")


def _check_reward_std(name: str, value: Any) -> None:
    if value in (AUTO, None):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name}={value!r} must be positive, 'auto' to follow the learner, or None for no scaling.")


def _setting(default: Any, check: Callable[[str, Any], None], help: str, flag_type: Any = None) -> Any:
    """A field of `Settings`: its default, its check, its one-line help (flags and docs),
    and the argparse type of its command-line flag (None: no flag)."""
    factory = (lambda: type(default)(default)) if isinstance(default, (dict, list)) else None
    metadata = {"check": check, "help": help, "flag_type": flag_type}
    if factory:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _int_flag(text: str) -> int:
    return int(text.replace("_", ""))


_int_flag.__name__ = "integer"  # argparse names the type in its errors


def _quantile_flag(text: str) -> Optional[float]:
    return None if text.lower() == "none" else float(text)


_quantile_flag.__name__ = "number or 'none'"


def _bool_flag(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


_bool_flag.__name__ = "'true' or 'false'"


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False.")


def _auto_or(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag's type that also takes 'auto' and 'none' (None)."""

    def parse(text: str) -> Any:
        lowered = text.lower()
        return AUTO if lowered == AUTO else None if lowered == "none" else kind(text)

    parse.__name__ = f"'auto', 'none' or {kind.__name__}"  # argparse names the type in its errors
    return parse


@dataclasses.dataclass(frozen=True)
class Settings:
    """DiffusionScoreIL's method settings (the arguments it shares with imitation's
    ``AdversarialTrainer`` are the trainer's own). Each is validated on construction."""

    conditioning: str = _setting(
        "state", _one_of(CONDITIONINGS),
        "what is diffused: 'state' (needs no expert actions), 'state_action' or 'state_next_state'", str)
    drop_state_coordinates: Union[Tuple[int, ...], str] = _setting(
        (), _check_drop,
        "coordinates of the (flattened) observation left out of what is diffused (the policy still sees "
        f"them), or {UNBOUNDED_POSITIONS!r}: those the env's MuJoCo model names as the body's position on "
        "the plane")
    diffusion_steps: int = _setting(1000, _at_least(), "diffusion timesteps T (linear betas 1e-4 to 0.02)",
                                    _int_flag)
    score_net_kwargs: Dict[str, Any] = _setting({}, _check_mapping,
                                                "keyword arguments of the ScoreNetworks built by the trainer")
    score_opt_cls: Type[th.optim.Optimizer] = _setting(th.optim.AdamW, _check_optimizer,
                                                       "optimiser of both score networks")
    score_opt_kwargs: Dict[str, Any] = _setting({"lr": 1e-3}, _check_mapping, "its keyword arguments")
    expert_fit_steps: int = _setting(10_000, _at_least(), "gradient steps of the expert score's fit", _int_flag)
    learner_fit_steps: int = _setting(
        100, _at_least(0),
        "gradient steps of each round's learner score fit, from new weights and a new optimiser", _int_flag)
    learner_buffer_size: int = _setting(200_000, _at_least(),
                                        "learner features kept for its score's fit (the newest)", _int_flag)
    cost_timesteps: int = _setting(
        12, _at_least(),
        "diffusion timesteps per state in the cost estimate, importance-sampled, each an antithetic noise pair",
        _int_flag)
    cost_precision: str = _setting(
        "auto", _one_of(PRECISIONS),
        "arithmetic of the score networks in the cost: 'float32', 'bfloat16', or 'auto' (bfloat16 where the "
        "device computes it natively)", str)
    relabel_refresh: Union[int, str, None] = _setting(
        AUTO, _check_refresh,
        "off-policy learners: stored transitions whose cost is recomputed each round, the stalest first; "
        "'auto': a quarter of the transitions a round's minibatches draw; 'none': every drawn one", _auto_or(_int_flag))
    reward_saturation: Optional[float] = _setting(
        0.25, _check_quantile,
        "the reward is tanh(-c / s), s this quantile of the cost on the learner's newest states; "
        "'none': the plain -c", _quantile_flag)
    reward_std: Union[float, str, None] = _setting(
        AUTO, _check_reward_std,
        "the learner's reward is scaled to this std; 'auto': the learner's entropy coefficient where it has "
        "one (SAC, TQC), else 1; 'none': no scaling", _auto_or(float))

    absorbing_states: bool = _setting(
        True, _check_bool,
        "an episode the env ends early (not by a time limit) goes on in an absorbing state (DAC's), whose reward "
        "comes from how often the expert and the learner reach it and whose worth the learner's values take on; "
        "false: the end is worth nothing, as in imitation's trainers, which then need allow_variable_horizon=True",
        _bool_flag)

    def __post_init__(self):
        drop = self.drop_state_coordinates
        if not isinstance(drop, str):
            object.__setattr__(self, "drop_state_coordinates", tuple(drop))
        for name in ("score_net_kwargs", "score_opt_kwargs"):  # None: the default
            if getattr(self, name) is None:
                object.__setattr__(self, name, _default(name))
        for field in dataclasses.fields(self):
            field.metadata["check"](field.name, getattr(self, field.name))

    def to_dict(self) -> Dict[str, Any]:
        """The settings as plain data (the optimiser by its import path), for checkpoints and result files."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["drop_state_coordinates"] = (
            values["drop_state_coordinates"] if isinstance(values["drop_state_coordinates"], str)
            else list(values["drop_state_coordinates"])
        )
        cls = values["score_opt_cls"]
        values["score_opt_cls"] = f"{cls.__module__}:{cls.__qualname__}"
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Settings":
        """The inverse of `to_dict`."""
        values = dict(values)
        if isinstance(values.get("score_opt_cls"), str):
            module, _, name = values["score_opt_cls"].partition(":")
            values["score_opt_cls"] = getattr(importlib.import_module(module), name)
        return cls(**values)

    def other_than_defaults(self) -> Dict[str, Any]:
        """The settings whose value is not the default, as `to_dict` gives them."""
        default = Settings().to_dict()
        return {name: value for name, value in self.to_dict().items() if value != default[name]}


def _default(name: str) -> Any:
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


# imitation's AdversarialTrainer arguments that DiffusionScoreIL has under another name, or not at all.
GAIL_ARGUMENTS = {
    "reward_net": "has no equivalent (there is no discriminator): leave it out; score_net_kwargs shapes the "
                  "score networks",
    "n_disc_updates_per_round": "is learner_fit_steps here",
    "disc_opt_cls": "is score_opt_cls here",
    "disc_opt_kwargs": "is score_opt_kwargs here",
    "gen_replay_buffer_capacity": "is learner_buffer_size here",
    "demo_minibatch_size": "has no equivalent (each score-network step takes demo_batch_size rows at once): "
                           "leave it out",
    "init_tensorboard_graph": "has no equivalent (there is no discriminator graph): leave it out",
}


def build(settings: Mapping[str, Any]) -> Settings:
    """`Settings` from keyword arguments, naming the valid ones when one is not a setting."""
    names = [f.name for f in dataclasses.fields(Settings)]
    gail = sorted(set(settings) & set(GAIL_ARGUMENTS))
    if gail:
        raise TypeError(f"{gail[0]}, an argument of imitation's GAIL, {GAIL_ARGUMENTS[gail[0]]}.")
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise TypeError(f"{unknown} are not DiffusionScoreIL arguments: its settings are {names}.")
    return Settings(**settings)


def add_flags(parser: argparse.ArgumentParser, names: Optional[Sequence[str]] = None) -> None:
    """A ``--NAME`` flag for each setting a command line can give (of ``names``, default
    all); a flag not given is absent from the parsed arguments (`given_flags`)."""
    for field in dataclasses.fields(Settings):
        flag_type = field.metadata["flag_type"]
        if flag_type is None or (names is not None and field.name not in names):
            continue
        choices = {"conditioning": CONDITIONINGS, "cost_precision": PRECISIONS}.get(field.name)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=_checked(field, flag_type),
                            default=argparse.SUPPRESS, choices=choices,
                            help=f"{field.metadata['help']} (default: {_default(field.name)})")


def _checked(field: dataclasses.Field, flag_type: Callable[[str], Any]) -> Callable[[str], Any]:
    """``flag_type``, then the setting's own check: a bad value is refused as the flag is parsed."""

    def parse(text: str) -> Any:
        value = flag_type(text)
        try:
            field.metadata["check"](field.name, value)
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = getattr(flag_type, "__name__", "value")  # argparse names the type in its errors
    return parse


def given_flags(args: argparse.Namespace) -> Dict[str, Any]:
    """The settings whose `add_flags` flags were given, as keyword arguments."""
    return {
        f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
        if f.metadata["flag_type"] is not None and hasattr(args, f.name)
    }


def markdown_table() -> str:
    """Markdown: a row per setting with its default and what it does (``docs/settings.md`` holds it)."""
    rows = ["| setting | default | what it does |", "|---|---|---|"]
    for field in dataclasses.fields(Settings):
        default = _default(field.name)
        shown = f"torch.optim.{default.__qualname__}" if isinstance(default, type) else repr(default)
        rows.append(f"| `{field.name}` | `{shown}` | {field.metadata['help']} |")
    return "\n".join(rows)
