"""The schedule and the score network against closed-form Gaussian results."""

import numpy as np
import pytest
import torch as th

from sb3_diffusion_il import DiffusionSchedule, ScoreNetwork
from sb3_diffusion_il.score_net import fit, heldout_loss


def test_schedule_matches_ddpm_definition():
    schedule = DiffusionSchedule(100, beta_start=1e-4, beta_end=0.02)
    betas = np.linspace(1e-4, 0.02, 100)
    abar = np.cumprod(1 - betas)
    x0, eps = th.randn(5, 3), th.randn(5, 3)
    t = th.tensor([0, 10, 50, 98, 99])
    expected = np.sqrt(abar[t.numpy()])[:, None] * x0.numpy() + np.sqrt(1 - abar[t.numpy()])[:, None] * eps.numpy()
    np.testing.assert_allclose(schedule.noise(x0, t, eps).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_stratified_timesteps_cover_every_stratum():
    schedule = DiffusionSchedule(1000)
    t = schedule.stratified_timesteps(7, 10, th.Generator().manual_seed(0))
    assert t.shape == (7, 10)
    assert ((t // 100) == th.arange(10)).all()


def gaussian_optimal_eps(x_t, t, schedule, mean, std):
    """E[eps | x_t] for x_0 ~ N(mean, diag(std^2)): Gaussian conditioning."""
    a = schedule.signal_scale[t][:, None]
    b = schedule.noise_scale[t][:, None]
    return b * (x_t - a * mean) / (a**2 * std**2 + b**2)


def test_fitted_network_matches_analytic_gaussian_denoiser():
    th.manual_seed(0)
    mean, std = th.tensor([1.0, -2.0]), th.tensor([0.5, 2.0])
    schedule = DiffusionSchedule(1000)
    net = ScoreNetwork(2)  # identity normaliser: the network sees N(mean, std^2) as is
    gen = th.Generator().manual_seed(0)
    opt = th.optim.AdamW(net.parameters(), lr=1e-3)
    fit(net, schedule, lambda n: mean + std * th.randn(n, 2, generator=gen), opt, 3000, 512, gen)

    x0 = mean + std * th.randn(20_000, 2, generator=gen)
    t = schedule.uniform_timesteps(len(x0), gen)
    x_t = schedule.noise(x0, t, th.randn(x0.shape, generator=gen))
    with th.no_grad():
        predicted = net(x_t, t)
    optimal = gaussian_optimal_eps(x_t, t, schedule, mean, std)
    relative_error = ((predicted - optimal) ** 2).mean() / optimal.var()
    assert relative_error < 0.03, relative_error
    # The regression loss of the optimal predictor is E[Var(eps | x_t)]; the fit gets close.
    loss = heldout_loss(net, schedule, mean + std * th.randn(20_000, 2, generator=gen))
    optimal_loss = float((1 - (schedule.noise_scale[t][:, None] ** 2 / (
        schedule.signal_scale[t][:, None] ** 2 * std**2 + schedule.noise_scale[t][:, None] ** 2))).mean())
    assert loss == pytest.approx(optimal_loss, abs=0.02)


def test_untrained_network_is_far_from_the_analytic_denoiser():
    """The bar above is one an unfitted network fails."""
    th.manual_seed(0)
    mean, std = th.tensor([1.0, -2.0]), th.tensor([0.5, 2.0])
    schedule = DiffusionSchedule(1000)
    net = ScoreNetwork(2)
    x0 = mean + std * th.randn(5000, 2)
    t = schedule.uniform_timesteps(len(x0))
    x_t = schedule.noise(x0, t, th.randn(x0.shape))
    with th.no_grad():
        predicted = net(x_t, t)
    optimal = gaussian_optimal_eps(x_t, t, schedule, mean, std)
    assert ((predicted - optimal) ** 2).mean() / optimal.var() > 0.03


@pytest.mark.parametrize("activation", ["leaky_relu", "linear"])
def test_normalizer_and_config_survive_state_dict_roundtrip(activation):
    net = ScoreNetwork(3, hidden_sizes=(8, 8), activation=activation)
    net.set_normalization(np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.0, 4.0]))
    copy = ScoreNetwork(**net.config())
    copy.load_state_dict(net.state_dict())
    x = th.randn(4, 3)
    assert th.equal(copy.normalize(x), net.normalize(x))
    assert copy.std[1] == 1.0  # a constant coordinate keeps scale 1
    t = th.zeros(4, dtype=th.long)
    assert th.equal(copy(x, t), net(x, t))


def test_linear_network_is_linear_in_x():
    net = ScoreNetwork(3, hidden_sizes=(16,), activation="linear")
    t = th.full((2,), 5)
    x, y = th.randn(2, 3), th.randn(2, 3)
    with th.no_grad():
        lhs = net(x + y, t) - net(y, t)
        rhs = net(x, t) - net(th.zeros(2, 3), t)
    th.testing.assert_close(lhs, rhs, atol=1e-5, rtol=1e-4)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="leaky_relu"):
        ScoreNetwork(3, activation="gelu")
