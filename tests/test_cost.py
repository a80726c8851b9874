"""The cost against the diffusion score divergence it estimates, on Gaussians."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_diffusion_il import DiffusionSchedule, DiffusionScoreReward, ScoreNetwork, diffusion_score_cost
from sb3_diffusion_il.cost import TrainingReward, native_bfloat16, quantile_timesteps, timestep_proposal
from sb3_diffusion_il.score_net import fit
from test_diffusion import gaussian_optimal_eps

EXPERT_MEAN, EXPERT_STD = th.tensor([0.0, 0.0]), th.tensor([1.0, 1.0])
LEARNER_MEAN, LEARNER_STD = th.tensor([1.5, -1.0]), th.tensor([0.5, 1.0])


def fitted_net(schedule, mean, std, seed):
    th.manual_seed(seed)
    gen = th.Generator().manual_seed(seed)
    net = ScoreNetwork(2)
    fit(net, schedule, lambda n: mean + std * th.randn(n, 2, generator=gen),
        th.optim.AdamW(net.parameters(), lr=1e-3), 3000, 512, gen)
    return net


@pytest.fixture(scope="module")
def schedule():
    return DiffusionSchedule(1000)


@pytest.fixture(scope="module")
def expert_net(schedule):
    return fitted_net(schedule, EXPERT_MEAN, EXPERT_STD, 0)


def analytic_divergence(schedule, n=200_000):
    """E_t E_{x_t ~ learner_t} ||eps*_E - eps*_L||^2 / dim, with exact Gaussian denoisers."""
    gen = th.Generator().manual_seed(1)
    x0 = LEARNER_MEAN + LEARNER_STD * th.randn(n, 2, generator=gen)
    t = schedule.uniform_timesteps(n, gen)
    x_t = schedule.noise(x0, t, th.randn(x0.shape, generator=gen))
    gap = gaussian_optimal_eps(x_t, t, schedule, EXPERT_MEAN, EXPERT_STD) - gaussian_optimal_eps(
        x_t, t, schedule, LEARNER_MEAN, LEARNER_STD)
    return float(gap.pow(2).mean())


def test_cost_is_zero_for_identical_networks(schedule, expert_net):
    x = LEARNER_MEAN + LEARNER_STD * th.randn(1000, 2)
    with th.no_grad():
        cost = diffusion_score_cost(expert_net, copy.deepcopy(expert_net), schedule, x, 16)
    assert th.equal(cost, th.zeros(1000))


def test_cost_on_learner_states_estimates_the_score_divergence(schedule, expert_net):
    learner_net = fitted_net(schedule, LEARNER_MEAN, LEARNER_STD, 1)
    gen = th.Generator().manual_seed(2)
    learner_x = LEARNER_MEAN + LEARNER_STD * th.randn(20_000, 2, generator=gen)
    expert_x = EXPERT_MEAN + EXPERT_STD * th.randn(20_000, 2, generator=gen)
    with th.no_grad():
        cost_learner = diffusion_score_cost(expert_net, learner_net, schedule, learner_x, 16, gen).mean()
        cost_expert = diffusion_score_cost(expert_net, learner_net, schedule, expert_x, 16, gen).mean()
    divergence = analytic_divergence(schedule)
    assert divergence > 0.05  # the two Gaussians are clearly apart
    assert float(cost_learner) == pytest.approx(divergence, rel=0.25)
    # On expert states the sign flips: the expert score explains them better.
    assert cost_expert < -0.5 * divergence


def test_cost_near_zero_when_learner_matches_expert(schedule, expert_net):
    same_net = fitted_net(schedule, EXPERT_MEAN, EXPERT_STD, 3)
    x = EXPERT_MEAN + EXPERT_STD * th.randn(20_000, 2)
    with th.no_grad():
        cost = diffusion_score_cost(expert_net, same_net, schedule, x, 16).mean()
    assert abs(float(cost)) < 0.1 * analytic_divergence(schedule)


def test_reward_net_is_minus_cost_of_the_chosen_feature(schedule, expert_net):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (2,))
    act_space = gym.spaces.Box(-1, 1, (1,))
    learner_net = fitted_net(schedule, LEARNER_MEAN, LEARNER_STD, 1)
    reward = DiffusionScoreReward(obs_space, act_space, expert_net, learner_net, schedule, "state", 8,
                                  th.Generator().manual_seed(5), precision="float32")
    obs, next_obs = th.randn(8, 2), th.randn(8, 2)
    state = reward.generator.get_state()
    r = reward(obs, th.zeros(8, 1), next_obs, th.zeros(8))
    reward.generator.set_state(state)
    expected = -diffusion_score_cost(expert_net, learner_net, schedule, next_obs, generator=reward.generator,
                                     timesteps=reward.timesteps, weights=reward.weights, antithetic=True)
    th.testing.assert_close(r, expected)


@pytest.fixture(scope="module")
def learner_net(schedule):
    return fitted_net(schedule, LEARNER_MEAN, LEARNER_STD, 1)


def test_quantile_timesteps_are_unbiased_for_the_uniform_average():
    gen = th.Generator().manual_seed(0)
    proposal = th.linspace(3.0, 0.5, 1000)
    f = th.sin(th.arange(1000) / 70.0) + th.arange(1000) / 500.0
    estimates = []
    for _ in range(10_000):
        t, w = quantile_timesteps(proposal, 6, gen)
        assert th.all(t[1:] >= t[:-1]) and t.min() >= 0 and t.max() < 1000
        estimates.append(float((w * f[t]).mean()))
    assert np.mean(estimates) == pytest.approx(float(f.mean()), abs=0.02)  # 4 standard errors
    # A uniform proposal gives an even grid with unit weights.
    t, w = quantile_timesteps(th.ones(1000), 10, gen)
    assert th.all(t.diff() == 100) and th.allclose(w, th.ones(10))


def test_proposal_is_uniform_for_identical_networks(schedule, expert_net):
    x = LEARNER_MEAN + LEARNER_STD * th.randn(64, 2)
    with th.no_grad():
        proposal = timestep_proposal(expert_net, copy.deepcopy(expert_net), schedule, x)
    assert proposal.shape == (1000,)
    th.testing.assert_close(proposal, th.full((1000,), float(proposal[0])))


def test_importance_sampled_reward_estimates_the_score_divergence(schedule, expert_net, learner_net):
    """The production estimate (profiled proposal, antithetic pairs, shared timesteps) over rounds."""
    space = gym.spaces.Box(-np.inf, np.inf, (2,))
    reward = DiffusionScoreReward(space, space, expert_net, learner_net, schedule, "state", 12,
                                  th.Generator().manual_seed(4))
    gen = th.Generator().manual_seed(5)
    learner_x = LEARNER_MEAN + LEARNER_STD * th.randn(5000, 2, generator=gen)
    costs = []
    with th.no_grad():
        for _ in range(10):  # rounds: each profiles and draws its own timesteps
            reward.resample_timesteps(learner_x[:128])
            costs.append(float(reward.cost(learner_x).mean()))
    assert not th.allclose(reward.proposal, reward.proposal.mean())  # it did concentrate
    assert np.mean(costs) == pytest.approx(analytic_divergence(schedule), rel=0.25)


def test_bfloat16_arithmetic_keeps_the_costs(schedule, expert_net, learner_net):
    space = gym.spaces.Box(-np.inf, np.inf, (2,))
    x = LEARNER_MEAN + LEARNER_STD * th.randn(2000, 2, generator=th.Generator().manual_seed(6))
    costs = {}
    for precision in ("float32", "bfloat16"):
        reward = DiffusionScoreReward(space, space, expert_net, learner_net, schedule, "state", 12,
                                      th.Generator().manual_seed(7), precision=precision)
        reward.resample_timesteps(x[:128])
        with th.no_grad():
            costs[precision] = reward.cost(x)
    assert costs["bfloat16"].dtype == th.float32
    assert not th.equal(costs["bfloat16"], costs["float32"])  # it did compute in bfloat16
    assert np.corrcoef(costs["bfloat16"].numpy(), costs["float32"].numpy())[0, 1] > 0.99
    assert float(costs["bfloat16"].mean()) == pytest.approx(float(costs["float32"].mean()), rel=0.05)
    auto = DiffusionScoreReward(space, space, expert_net, learner_net, schedule)
    assert auto.bfloat16 == native_bfloat16(th.device("cpu"))


def test_unknown_precision(schedule, expert_net):
    space = gym.spaces.Box(-np.inf, np.inf, (2,))
    with pytest.raises(ValueError, match="choose one of"):
        DiffusionScoreReward(space, space, expert_net, expert_net, schedule, precision="float16")


def test_minibatch_standardised_with_the_worth_of_staying_after_a_termination(schedule, expert_net):
    space = gym.spaces.Box(-np.inf, np.inf, (2,))
    reward = TrainingReward(DiffusionScoreReward(space, space, expert_net, expert_net, schedule), 0.25, 0.1)
    r = th.randn(256, 1) * 5 + 3
    plain = reward.minibatch(r)
    assert float(plain.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(plain.std(unbiased=False)) == pytest.approx(0.1, rel=1e-4)
    ended = th.zeros(256, dtype=th.bool)
    ended[:3] = True
    # Staying is two of the minibatch's stds below its mean: -0.2 standardised, worth 0.9 / 0.1 times that.
    stay = r.mean() - 2 * r.std(unbiased=False)
    with_end = reward.minibatch(r, ended, stay, gamma=0.9)
    assert th.equal(with_end[3:], plain[3:])
    th.testing.assert_close(with_end[:3], plain[:3] - 1.8, rtol=0, atol=1e-4)
