"""minisd.diffusion: schedules and DDPMScheduler, against closed forms and against diffusers."""

import json

import pytest
import torch

from minisd.diffusion import (DDPMScheduler, make_betas, posterior_coefficients, predict_original,
                              rescale_zero_terminal_snr, spaced_timesteps, threshold_sample)
from minisd.configuration import FrozenDict

diffusers = pytest.importorskip("diffusers")

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False)
CONFIGS = {
    "sd": SD,
    "defaults": {},
    "cosine_v": dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=False),
    "sample_fixed_large": dict(prediction_type="sample", variance_type="fixed_large", clip_sample_range=0.5),
    # zero terminal SNR needs v-prediction: with epsilon, x_0 = (x_T - eps) / 0 at the first step
    "threshold_zero_snr": dict(thresholding=True, sample_max_value=1.5, rescale_betas_zero_snr=True,
                               prediction_type="v_prediction",
                               beta_schedule="sigmoid"),
    "short_T": dict(num_train_timesteps=100, beta_schedule="scaled_linear", clip_sample=False),
}
SPACINGS = ("leading", "trailing", "linspace")


def fake_model(sample, t):
    "A deterministic stand-in for a trained network: any smooth function of (x_t, t)."
    t = float(t)
    return 0.6 * sample * torch.cos(torch.tensor(t / 300.0)) + 0.3 * torch.sin(3 * sample + t / 100.0)


def run_pair(ours, ref, num_inference_steps, shape=(2, 3, 4, 4), seed=0):
    """Step both schedulers along diffusers' trajectory; return the largest per-step difference and
    the difference of the two free-running final samples."""
    ours.set_timesteps(num_inference_steps)
    ref.set_timesteps(num_inference_steps)
    assert torch.equal(ours.timesteps, ref.timesteps), (ours.timesteps, ref.timesteps)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    g_ours, g_ref = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 1)
    g_free_ours, g_free_ref = torch.Generator().manual_seed(seed + 2), torch.Generator().manual_seed(seed + 2)
    x_ours, x_ref, worst = x.clone(), x.clone(), 0.0
    for t in ref.timesteps:
        expected = ref.step(fake_model(x, t), t, x, generator=g_ref).prev_sample
        got = ours.step(fake_model(x, t), t, x, generator=g_ours)
        worst = max(worst, (got - expected).abs().max().item())
        x = expected
    # second pass: both run free from the same start
    ours.set_timesteps(num_inference_steps)
    ref.set_timesteps(num_inference_steps)
    for t in ref.timesteps:
        x_ref = ref.step(fake_model(x_ref, t), t, x_ref, generator=g_free_ref).prev_sample
        x_ours = ours.step(fake_model(x_ours, t), t, x_ours, generator=g_free_ours)
    return worst, (x_ours - x_ref).abs().max().item()


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_ddpm_matches_diffusers(name, spacing, steps):
    cfg = dict(CONFIGS[name], timestep_spacing=spacing)
    ours, ref = DDPMScheduler(**cfg), diffusers.DDPMScheduler(**cfg)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    per_step, free = run_pair(ours, ref, steps)
    assert per_step <= 1e-6 and free <= 1e-6, (per_step, free)


def test_ddpm_full_chain_and_custom_timesteps_match_diffusers():
    ours, ref = DDPMScheduler(**SD), diffusers.DDPMScheduler(**SD)
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(3))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    for t in [999, 500, 3, 1, 0]:  # no set_timesteps: the previous timestep is t - 1
        torch.testing.assert_close(ours.step(fake_model(x, t), t, x, generator=g1),
                                   ref.step(fake_model(x, t), t, x, generator=g2).prev_sample, rtol=0, atol=1e-6)
    ours.set_timesteps(timesteps=[900, 600, 250, 10])
    ref.set_timesteps(timesteps=[900, 600, 250, 10])
    for t in ref.timesteps:
        torch.testing.assert_close(ours.step(fake_model(x, t), t, x, generator=g1),
                                   ref.step(fake_model(x, t), t, x, generator=g2).prev_sample, rtol=0, atol=1e-6)


def test_add_noise_and_velocity_match_diffusers():
    ours, ref = DDPMScheduler(**SD), diffusers.DDPMScheduler(**SD)
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 3, 4, 4, generator=gen), torch.randn(5, 3, 4, 4, generator=gen)
    t = torch.tensor([0, 10, 500, 998, 999])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.get_velocity(x0, noise, t), ref.get_velocity(x0, noise, t), rtol=0, atol=1e-6)


def test_config_round_trip_with_diffusers(tmp_path):
    ours = DDPMScheduler(**SD, prediction_type="v_prediction")
    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "DDPMScheduler" and saved["steps_offset"] == 1
    ref = diffusers.DDPMScheduler.from_pretrained(tmp_path / "ours")
    for key, value in ours.config.items():
        if not key.startswith("_"):
            assert ref.config[key] == value, key
    ref.register_to_config(timestep_spacing="trailing")
    ref.save_pretrained(tmp_path / "pipe" / "scheduler")
    back = DDPMScheduler.from_pretrained(tmp_path / "pipe", subfolder="scheduler")
    assert back.config.timestep_spacing == "trailing" and back.config.prediction_type == "v_prediction"
    # our config object works with diffusers' from_config and the other way round
    assert diffusers.DDPMScheduler.from_config(ours.config).config.beta_schedule == "scaled_linear"
    assert DDPMScheduler.from_config(ref.config).config.beta_end == 0.012
    with pytest.raises(FileNotFoundError):
        DDPMScheduler.from_pretrained(tmp_path / "nowhere")


def test_config_is_frozen_and_errors_name_the_argument():
    s = DDPMScheduler()
    assert isinstance(s.config, FrozenDict) and s.config.num_train_timesteps == 1000 and len(s) == 1000
    with pytest.raises(TypeError):
        s.config["beta_end"] = 1.0
    with pytest.raises(ValueError, match="beta_schedule"):
        DDPMScheduler(beta_schedule="cosine")
    with pytest.raises(ValueError, match="timestep_spacing"):
        DDPMScheduler(timestep_spacing="even")
    with pytest.raises(ValueError, match="num_inference_steps"):
        DDPMScheduler().set_timesteps(2000)
    with pytest.raises(TypeError, match="no config key 'eta'"):
        DDPMScheduler.from_config(s.config, eta=0.5)
    assert DDPMScheduler.from_config(s.config, beta_end=0.01).config.beta_end == 0.01


def test_schedules_closed_forms():
    betas = make_betas(1000, 0.00085, 0.012, "scaled_linear")
    assert torch.allclose(betas[[0, -1]], torch.tensor([0.00085, 0.012]))
    assert torch.allclose(betas.sqrt().diff(), betas.sqrt().diff()[0].expand(999), atol=1e-7)  # linear in sqrt
    abar = torch.cumprod(1 - make_betas(1000, beta_schedule="squaredcos_cap_v2"), 0)
    s = torch.arange(1, 1001, dtype=torch.float64) / 1000
    f = torch.cos((s + 0.008) / 1.008 * torch.pi / 2) ** 2 / torch.cos(torch.tensor(0.008 / 1.008 * torch.pi / 2)) ** 2
    assert torch.allclose(abar[:-5].double(), f[:-5], atol=1e-5)  # the cap 0.999 only bites at the very end
    zero = torch.cumprod(1 - rescale_zero_terminal_snr(make_betas(1000)), 0)
    assert zero[-1].abs() < 1e-10 and torch.isclose(zero[0], torch.cumprod(1 - make_betas(1000), 0)[0])
    assert list(spaced_timesteps("leading", 1000, 4, 1)) == [751, 501, 251, 1]
    assert list(spaced_timesteps("trailing", 1000, 4)) == [999, 749, 499, 249]
    assert list(spaced_timesteps("linspace", 1000, 4)) == [999, 666, 333, 0]


def test_add_noise_statistics_match_the_step_by_step_chain():
    "Iterating x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) eps t times gives add_noise's closed form."
    s = DDPMScheduler(num_train_timesteps=200, beta_schedule="linear", beta_end=0.05)
    gen = torch.Generator().manual_seed(0)
    n, t, x0 = 200_000, 120, torch.tensor(1.5)
    x = x0.expand(n).clone()
    for i in range(t + 1):
        x = (1 - s.betas[i]).sqrt() * x + s.betas[i].sqrt() * torch.randn(n, generator=gen)
    closed = s.add_noise(x0.expand(n), torch.randn(n, generator=gen), torch.full((n,), t))
    abar = s.alphas_cumprod[t]
    for sample in (x, closed):
        assert abs(sample.mean() - abar.sqrt() * x0) < 0.01
        assert abs(sample.var() - (1 - abar)) < 0.01


@pytest.mark.parametrize("num_inference_steps", [None, 20])
def test_posterior_is_bayes_rule_and_step_samples_it(num_inference_steps):
    s = DDPMScheduler(**SD)
    if num_inference_steps:
        s.set_timesteps(num_inference_steps)
        t, prev = s.timesteps[5], s.timesteps[6]
    else:
        t, prev = torch.tensor(400), torch.tensor(399)
    abar_t, abar_s = s.alphas_cumprod[t].double(), s.alphas_cumprod[prev].double()
    a = abar_t / abar_s  # q(x_t | x_s) = N(sqrt(a) x_s, 1 - a); q(x_s | x_0) = N(sqrt(abar_s) x_0, 1 - abar_s)
    x0, xt = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.4, dtype=torch.float64)
    precision = a / (1 - a) + 1 / (1 - abar_s)
    var = 1 / precision
    mean = var * (a.sqrt() * xt / (1 - a) + abar_s.sqrt() * x0 / (1 - abar_s))
    got_mean, got_var = s.posterior(x0.float(), xt.float(), t)
    assert abs(got_mean - mean) < 1e-5 and abs(got_var - var) < 1e-6
    # Monte Carlo: simulate (x_s, x_t) given x_0 and regress x_s on x_t: the conditional law of x_s
    gen = torch.Generator().manual_seed(1)
    n = 400_000
    xs = abar_s.sqrt() * x0 + (1 - abar_s).sqrt() * torch.randn(n, generator=gen, dtype=torch.float64)
    xt_samples = a.sqrt() * xs + (1 - a).sqrt() * torch.randn(n, generator=gen, dtype=torch.float64)
    cov = torch.cov(torch.stack([xs, xt_samples]))
    slope = cov[0, 1] / cov[1, 1]
    mc_mean = xs.mean() + slope * (xt - xt_samples.mean())
    mc_var = cov[0, 0] - slope * cov[0, 1]
    assert abs(mc_mean - mean) < 0.01 and abs(mc_var / var - 1) < 0.02
    # `step` with a perfect x_0 prediction draws from exactly this posterior
    s2 = DDPMScheduler(**dict(SD, prediction_type="sample"))
    if num_inference_steps:
        s2.set_timesteps(num_inference_steps)
    draws = s2.step(torch.full((n,), 0.7), t, torch.full((n,), -0.4), generator=gen).double()
    assert abs(draws.mean() - mean) < 0.01 and abs(draws.var() / var - 1) < 0.02


def test_generator_list_draws_per_sample():
    s = DDPMScheduler()
    x = torch.zeros(2, 1, 2, 2)
    a = s.step(x, 500, x, generator=[torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    b = s.step(x[:1], 500, x[:1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a[1:], b)


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_predict_original_inverts_the_closed_form(kind):
    gen = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    abar = torch.tensor(0.37, dtype=torch.float64)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    output = {"epsilon": eps, "sample": x0, "v_prediction": abar.sqrt() * eps - (1 - abar).sqrt() * x0}[kind]
    got_x0, got_eps = predict_original(output, x_t, abar, kind)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)
    with pytest.raises(ValueError, match="prediction_type"):
        predict_original(output, x_t, abar, "x0")


def test_posterior_coefficients_give_the_noise_form_of_the_mean_and_the_elbo_weight():
    "mu = (x_t - beta / sqrt(1 - abar_t) eps) / sqrt(alpha_t), so the KL of two such means is w_t |eps - eps'|^2."
    abar = torch.cumprod(1 - make_betas(1000).double(), 0)
    gen = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64)
    for t in (1, 37, 500, 999):
        x0_coeff, xt_coeff, var, beta = posterior_coefficients(abar[t], abar[t - 1])
        x_t = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * eps
        mean = x0_coeff * x0 + xt_coeff * x_t
        torch.testing.assert_close(mean, (x_t - beta / (1 - abar[t]).sqrt() * eps) / (1 - beta).sqrt())
        torch.testing.assert_close(var, (1 - abar[t - 1]) / (1 - abar[t]) * beta)
    _, _, first_var, _ = posterior_coefficients(abar[0], torch.tensor(1.0, dtype=torch.float64))
    assert first_var == 1e-20  # no noise at the first step: the variance is clamped, not 0


def test_threshold_sample_is_clipping_when_the_quantile_is_small_and_rescales_otherwise():
    x = torch.tensor([[0.2, -0.5, 0.9, -0.1]])
    torch.testing.assert_close(threshold_sample(x), x)  # s = 1: nothing beyond [-1, 1] to clip
    y = torch.tensor([[3.0, -1.5, 0.5, 2.0]])
    out = threshold_sample(y, dynamic_thresholding_ratio=1.0, sample_max_value=2.0)  # s = min(max |y|, 2) = 2
    torch.testing.assert_close(out, torch.tensor([[1.0, -0.75, 0.25, 1.0]]))
