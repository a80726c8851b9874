"""The noise-prediction (score) network and fitting it by denoising regression.

``eps_theta(x_t, t)`` predicts the noise in ``x_t``; it is the score up to scale:
``grad log p_t(x_t) = -eps_theta(x_t, t) / sqrt(1 - abar_t)``. Fitting minimises
``E_{x_0, t ~ U[0, T), eps} ||eps_theta(x_t, t) - eps||^2``.
"""

import contextlib
import math
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Type

import numpy as np
import torch as th
from torch import nn
from tqdm.auto import tqdm

from sb3_diffusion_il.buffers import LearnerStateBuffer
from sb3_diffusion_il.diffusion import DiffusionSchedule

ACTIVATIONS: Dict[str, Optional[Type[nn.Module]]] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "linear": None,
}


class SinusoidalEmbedding(nn.Module):
    """The transformer's sinusoidal position code, applied to the timestep."""

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", th.exp(-math.log(max_period) * th.arange(half) / half))

    def forward(self, t: th.Tensor) -> th.Tensor:
        angles = t.float()[:, None] * self.freqs[None]
        return th.cat([angles.sin(), angles.cos()], dim=1)


class ScoreNetwork(nn.Module):
    """MLP ``[x_t, embed(t)] -> eps``, with the input normaliser of the data it models.

    The normaliser (per-coordinate mean and std, set from the expert's data) is
    part of the module's state, so saving and loading keep it.

    :param dim: dimension of the data
    :param hidden_sizes: widths of the hidden layers; ``()`` gives a single linear layer
    :param activation: a key of ``ACTIVATIONS``; ``"linear"`` uses none, so the
        network is linear in ``x_t``
    :param time_embedding_dim: size of the sinusoidal timestep embedding
    """

    def __init__(
        self,
        dim: int,
        hidden_sizes: Sequence[int] = (256,),
        activation: str = "leaky_relu",
        time_embedding_dim: int = 16,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}: choose one of {list(ACTIVATIONS)}.")
        self.dim = dim
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.activation = activation
        self.time_embedding_dim = time_embedding_dim
        self.embed = SinusoidalEmbedding(time_embedding_dim)
        layers = []
        width = dim + time_embedding_dim
        for hidden in self.hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if ACTIVATIONS[activation] is not None:
                layers.append(ACTIVATIONS[activation]())
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("mean", th.zeros(dim))
        self.register_buffer("std", th.ones(dim))
        # Gradient steps taken so far: a network with none has not been fitted.
        self.register_buffer("fitted_steps", th.zeros((), dtype=th.long))

    def config(self) -> Dict[str, Any]:
        """The constructor arguments, to rebuild the network when loading."""
        return dict(
            dim=self.dim,
            hidden_sizes=list(self.hidden_sizes),
            activation=self.activation,
            time_embedding_dim=self.time_embedding_dim,
        )

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted_steps > 0)

    def set_normalization(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Sets the normaliser; coordinates that never vary keep scale 1."""
        std = np.where(np.asarray(std) > 1e-6, std, 1.0)
        self.mean.copy_(th.as_tensor(mean, dtype=th.float32))
        self.std.copy_(th.as_tensor(std, dtype=th.float32))

    def normalize(self, x: th.Tensor) -> th.Tensor:
        """Standardised ``x`` in the network's dtype (MuJoCo observations are float64)."""
        return (x.to(self.mean.dtype) - self.mean) / self.std

    def forward(self, x_t: th.Tensor, t: th.Tensor) -> th.Tensor:
        """Predicted noise for normalised, noised data ``x_t`` (n, dim) at timesteps ``t`` (n,)."""
        return self.mlp(th.cat([x_t, self.embed(t)], dim=1))


def denoising_errors(net: ScoreNetwork, x_t: th.Tensor, t: th.Tensor, eps: th.Tensor) -> th.Tensor:
    """Per-sample squared error of the noise prediction, averaged over coordinates."""
    return (net(x_t, t) - eps).pow(2).mean(dim=1)


def denoising_loss(
    net: ScoreNetwork,
    schedule: DiffusionSchedule,
    x: th.Tensor,
    generator: Optional[th.Generator] = None,
) -> th.Tensor:
    """The regression loss on raw data ``x``: uniform timesteps, fresh noise."""
    x0 = net.normalize(x)
    t = schedule.uniform_timesteps(len(x0), generator)
    eps = th.randn(x0.shape, generator=generator, device=x0.device)
    return denoising_errors(net, schedule.noise(x0, t, eps), t, eps).mean()


def heldout_loss(net: ScoreNetwork, schedule: DiffusionSchedule, x: th.Tensor, seed: int = 0) -> float:
    """Denoising loss on held-out data with fixed noise, so values compare across calls."""
    generator = th.Generator(device=x.device).manual_seed(seed)
    with th.inference_mode():
        return float(denoising_loss(net, schedule, x, generator))


def fit(
    net: ScoreNetwork,
    schedule: DiffusionSchedule,
    sample_batch: Callable[[int], th.Tensor],
    optimizer: th.optim.Optimizer,
    n_steps: int,
    batch_size: int,
    generator: Optional[th.Generator] = None,
    progress_bar: bool = False,
    description: str = "score fit",
) -> float:
    """Takes ``n_steps`` gradient steps on batches from ``sample_batch``; returns their mean loss.

    :param sample_batch: returns ``batch_size`` raw (unnormalised) data rows
    """
    net.train()
    total = 0.0
    for _ in tqdm(range(n_steps), desc=description, disable=not progress_bar, leave=False):
        loss = denoising_loss(net, schedule, sample_batch(batch_size), generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    net.fitted_steps += n_steps
    net.eval()
    return total / max(n_steps, 1)


@contextlib.contextmanager
def torch_rng_seeded_from(generator: th.Generator) -> Iterator[None]:
    """Torch's global RNG, which layer initialisation draws from, seeded from ``generator``
    for the block and restored after it; the GPUs' too where CUDA is in use (layers on a
    GPU draw from them). Not `th.manual_seed`: before CUDA starts, it queues a seed that
    would outlive the block."""
    seed = int(th.randint(2**62, (), generator=generator, device=generator.device).item())
    gpus = range(th.cuda.device_count()) if th.cuda.is_initialized() else []
    with th.random.fork_rng(devices=gpus):
        th.default_generator.manual_seed(seed)
        if gpus:
            th.cuda.manual_seed_all(seed)
        yield


class ScorePair:
    """The method's two score networks and their fitting.

    The expert score is fitted once on the demonstrations' features, then frozen.
    The learner score is refitted every round on the learner-state buffer (the
    features of the learner's newest states: follow-the-leader), from new weights
    and a new optimiser, as the reference does; both standardise features with
    the expert's statistics, since the cost feeds them the same inputs.

    :param expert: the expert score network
    :param learner: the learner score network
    :param schedule: the diffusion schedule both are fitted with
    :param opt_cls: their optimiser
    :param opt_kwargs: its keyword arguments
    :param batch_size: rows per gradient step
    :param learner_buffer: the learner's features
    :param generator: random source of batches, noise and new weights
    """

    def __init__(
        self, expert: ScoreNetwork, learner: ScoreNetwork, schedule: DiffusionSchedule,
        opt_cls: Type[th.optim.Optimizer], opt_kwargs: Dict[str, Any], batch_size: int,
        learner_buffer: LearnerStateBuffer, generator: th.Generator,
    ):
        self.expert, self.learner, self.schedule = expert, learner, schedule
        self.opt_cls, self.opt_kwargs, self.batch_size = opt_cls, opt_kwargs, batch_size
        self.learner_buffer, self.generator = learner_buffer, generator
        self.expert_opt = opt_cls(expert.parameters(), **opt_kwargs)
        self.learner_opt = opt_cls(learner.parameters(), **opt_kwargs)

    def fit_expert(self, x: th.Tensor, n_steps: int, progress_bar: bool = False) -> float:
        """``n_steps`` gradient steps on batches of the expert's features ``x``; returns their mean loss."""

        def batch(n: int) -> th.Tensor:
            return x[th.randint(0, len(x), (n,), generator=self.generator, device=x.device)]

        return fit(self.expert, self.schedule, batch, self.expert_opt, n_steps, self.batch_size, self.generator,
                   progress_bar, "expert score")

    def refit_learner(self, n_steps: int) -> float:
        """Fits the learner score anew on the learner's features; returns the mean loss."""
        device = self.learner.mean.device

        def batch(n: int) -> th.Tensor:
            return self.learner_buffer.sample(n, None).to(device)

        with torch_rng_seeded_from(self.generator):
            for layer in self.learner.mlp:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        self.learner_opt = self.opt_cls(self.learner.parameters(), **self.opt_kwargs)
        return fit(self.learner, self.schedule, batch, self.learner_opt, n_steps, self.batch_size, self.generator)
