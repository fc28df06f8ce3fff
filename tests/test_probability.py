"""minisd.probability against torch.distributions and against direct counting."""

import math

import pytest
import torch

from minisd.probability import (GaussianClassModel, GaussianMixture2D, bayes, conditional, gaussian_kl,
                                gaussian_log_prob, joint_distribution, marginal, score)


def test_joint_marginal_conditional_by_counting():
    a = torch.tensor([0, 0, 1, 1, 1, 2])
    b = torch.tensor([0, 1, 1, 1, 0, 1])
    P = joint_distribution(a, b, 3, 2)
    expected = torch.tensor([[1, 1], [1, 2], [0, 1]], dtype=torch.float64) / 6
    torch.testing.assert_close(P, expected)
    torch.testing.assert_close(marginal(P, 0), torch.tensor([2, 3, 1], dtype=torch.float64) / 6)
    torch.testing.assert_close(marginal(P, 1), torch.tensor([2, 4], dtype=torch.float64) / 6)
    torch.testing.assert_close(conditional(P, given=0)[1], torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(conditional(P, given=1)[:, 0], torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="keep"):
        marginal(P, 2)
    with pytest.raises(ValueError, match="given"):
        conditional(P, given=-1)
    with pytest.raises(ValueError, match="equal length"):
        joint_distribution(a, b[:3], 3, 2)


def test_bayes_matches_direct_conditional():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(4, 5, generator=g, dtype=torch.float64)
    P /= P.sum()
    posterior = bayes(marginal(P, 0), conditional(P, given=0))
    torch.testing.assert_close(posterior, conditional(P, given=1))
    torch.testing.assert_close(posterior.sum(0), torch.ones(5, dtype=torch.float64))


def test_gaussian_log_prob_and_kl_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x, m1, l1, m2, l2 = (torch.randn(6, 2, 3, generator=g) for _ in range(5))
    N = lambda m, lv: torch.distributions.Normal(m, torch.exp(0.5 * lv))  # noqa: E731
    torch.testing.assert_close(gaussian_log_prob(x, m1, l1), N(m1, l1).log_prob(x).sum((1, 2)))
    torch.testing.assert_close(gaussian_log_prob(x, m1, l1, dims=()), N(m1, l1).log_prob(x))
    kl = torch.distributions.kl_divergence(N(m1, l1), N(m2, l2)).sum((1, 2))
    torch.testing.assert_close(gaussian_kl(m1, l1, m2, l2), kl)
    prior = torch.distributions.Normal(torch.zeros_like(m1), torch.ones_like(m1))
    torch.testing.assert_close(gaussian_kl(m1, l1), torch.distributions.kl_divergence(N(m1, l1), prior).sum((1, 2)))
    assert torch.all(gaussian_kl(m1, l1, m1, l1).abs() < 1e-6)


def test_class_model_is_mle_and_posterior_is_bayes():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 300 + [1] * 100)
    x = torch.randn(400, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0], dtype=torch.float64)
    x[y == 1] += 3
    model = GaussianClassModel(2, min_var=1e-12).fit(x, y)
    torch.testing.assert_close(model.mean[1], x[y == 1].mean(0))
    torch.testing.assert_close(model.logvar[0].exp(), x[y == 0].var(0, unbiased=False))
    torch.testing.assert_close(model.log_prior.exp(), torch.tensor([0.75, 0.25], dtype=torch.float64))
    ll = model.log_likelihood(x[:5])
    ref = torch.distributions.Normal(model.mean[1], model.logvar[1].mul(0.5).exp()).log_prob(x[:5]).sum(1)
    torch.testing.assert_close(ll[:, 1], ref)
    post = model.posterior(x[:5])
    joint = ll.exp() * model.log_prior.exp()
    torch.testing.assert_close(post, joint / joint.sum(1, keepdim=True))
    samples = model.sample(torch.ones(4000, dtype=torch.long), generator=g)
    assert (samples.mean(0) - model.mean[1]).abs().max() < 0.15
    with pytest.raises(ValueError, match="labels"):
        GaussianClassModel(2).fit(x, y + 1)


def test_mixture_matches_torch_and_score_identity_holds():
    mix = GaussianMixture2D(means=[[-2.0, 0.0], [2.0, 1.0]], stds=[0.7, 1.3], weights=[2.0, 1.0])
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.tensor([2 / 3, 1 / 3], dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(
            mix.means, mix.stds[:, None].expand(2, 2)), 1))
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    torch.testing.assert_close(mix.log_prob(x), ref.log_prob(x))
    post = torch.stack([mix.log_posterior(x, c).exp() for c in range(2)], 1)
    torch.testing.assert_close(post.sum(1), torch.ones(50, dtype=torch.float64))
    for c in range(2):
        lhs = score(lambda z: mix.log_prob_given(z, c), x)
        rhs = score(mix.log_prob, x) + score(lambda z: mix.log_posterior(z, c), x)
        torch.testing.assert_close(lhs, rhs)
    # the score of one Gaussian is -(x - mean) / var
    torch.testing.assert_close(score(lambda z: mix.log_prob_given(z, 0), x), -(x - mix.means[0]) / 0.49)
    pts, ys = mix.sample(3000, generator=torch.Generator().manual_seed(0))
    assert abs((ys == 0).double().mean().item() - 2 / 3) < 0.03 and pts.shape == (3000, 2)
    assert math.isfinite(mix.log_prob(torch.tensor([[50.0, 50.0]], dtype=torch.float64)).item())
