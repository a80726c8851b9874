"""The noise-prediction (score) network and fitting it by denoising regression.

``eps_theta(x_t, t)`` predicts the noise in ``x_t``; it is the score up to scale:
``grad log p_t(x_t) = -eps_theta(x_t, t) / sqrt(1 - abar_t)``. Fitting minimises
``E_{x_0, t ~ U[0, T), eps} ||eps_theta(x_t, t) - eps||^2``.
"""

import math
from typing import Any, Callable, Dict, Optional, Sequence, Type

import numpy as np
import torch as th
from torch import nn
from tqdm.auto import tqdm

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
