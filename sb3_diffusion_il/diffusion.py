"""The DDPM (variance-preserving) forward process.

``x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps``, with
``abar_t = prod_{i <= t} (1 - beta_i)`` and betas linear from ``beta_start`` to
``beta_end`` over ``n_steps`` timesteps ``t = 0 .. n_steps - 1``.
"""

from typing import Dict, Optional

import torch as th
from torch import nn


class DiffusionSchedule(nn.Module):
    """Noise levels of the forward process, kept as buffers so ``.to(device)`` moves them.

    :param n_steps: number of diffusion timesteps T
    :param beta_start: noise variance added at the first step
    :param beta_end: noise variance added at the last step
    """

    def __init__(self, n_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        if n_steps < 1 or not 0 < beta_start <= beta_end < 1:
            raise ValueError(
                f"Invalid diffusion schedule (n_steps={n_steps}, beta_start={beta_start}, "
                f"beta_end={beta_end}): need n_steps >= 1 and 0 < beta_start <= beta_end < 1.",
            )
        self.n_steps = n_steps
        self.beta_start = beta_start
        self.beta_end = beta_end
        betas = th.linspace(beta_start, beta_end, n_steps, dtype=th.float64)
        alpha_bar = th.cumprod(1.0 - betas, dim=0)
        self.register_buffer("signal_scale", alpha_bar.sqrt().float())
        self.register_buffer("noise_scale", (1.0 - alpha_bar).sqrt().float())

    def config(self) -> Dict[str, float]:
        return dict(n_steps=self.n_steps, beta_start=self.beta_start, beta_end=self.beta_end)

    def noise(self, x0: th.Tensor, t: th.Tensor, eps: th.Tensor) -> th.Tensor:
        """``x_t`` for clean samples ``x0`` (n, d), timesteps ``t`` (n,) and noise ``eps`` (n, d)."""
        return self.signal_scale[t, None] * x0 + self.noise_scale[t, None] * eps

    def uniform_timesteps(self, n: int, generator: Optional[th.Generator] = None) -> th.Tensor:
        """``n`` timesteps drawn uniformly from ``[0, T)``."""
        return th.randint(0, self.n_steps, (n,), generator=generator, device=self.signal_scale.device)

    def stratified_timesteps(self, n: int, k: int, generator: Optional[th.Generator] = None) -> th.Tensor:
        """``k`` timesteps per sample, one uniform draw in each of ``k`` equal strata of ``[0, T)``.

        Stratifying keeps the estimate of an expectation over ``t`` unbiased while
        covering every noise level, which lowers its variance for a fixed ``k``.

        :return: long tensor of shape ``(n, k)``
        """
        device = self.signal_scale.device
        u = th.rand((n, k), generator=generator, device=device)
        t = ((th.arange(k, device=device) + u) * (self.n_steps / k)).long()
        return t.clamp_(max=self.n_steps - 1)
