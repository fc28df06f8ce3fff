"""minisd.flow: FlowMatchEulerDiscreteScheduler and the SD3 / FLUX helpers, against diffusers."""

import json

import diffusers
import pytest
import torch
from diffusers.pipelines.flux.pipeline_flux import calculate_shift as diffusers_calculate_shift
from diffusers.training_utils import compute_density_for_timestep_sampling as diffusers_density

from minisd.diffusion import DDPMScheduler
from minisd.flow import (FlowMatchEulerDiscreteScheduler, calculate_shift, compute_density_for_timestep_sampling,
                         shift_sigmas, time_shift)

CONFIGS = [
    ({}, None),
    (dict(shift=3.0), None),  # SD3
    (dict(shift=1.0, num_train_timesteps=500), None),
    (dict(invert_sigmas=True, shift=2.0), None),
    (dict(use_dynamic_shifting=True), "flux"),  # FLUX: mu from calculate_shift
    (dict(use_dynamic_shifting=True, base_shift=0.3, max_shift=1.5, base_image_seq_len=64,
          max_image_seq_len=1024), "flux"),
    (dict(use_dynamic_shifting=True, time_shift_type="linear"), 1.4),
]


def _mu(cfg, mu, seq_len=512):
    if mu != "flux":
        return mu
    keys = dict(base_seq_len=cfg.get("base_image_seq_len", 256), max_seq_len=cfg.get("max_image_seq_len", 4096),
                base_shift=cfg.get("base_shift", 0.5), max_shift=cfg.get("max_shift", 1.15))
    assert calculate_shift(seq_len, **keys) == diffusers_calculate_shift(seq_len, **keys)
    return calculate_shift(seq_len, **keys)


@pytest.mark.parametrize("cfg,mu", CONFIGS)
@pytest.mark.parametrize("steps", [1, 5, 28])
def test_schedule_and_step_match_diffusers(cfg, mu, steps):
    ours, ref = FlowMatchEulerDiscreteScheduler(**cfg), diffusers.FlowMatchEulerDiscreteScheduler(**cfg)
    assert torch.equal(ours.sigmas, ref.sigmas) and torch.equal(ours.timesteps, ref.timesteps)
    mu = _mu(cfg, mu)
    ours.set_timesteps(steps, mu=mu)
    ref.set_timesteps(steps, mu=mu)
    torch.testing.assert_close(ours.sigmas, ref.sigmas, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.timesteps, ref.timesteps, atol=1e-6, rtol=0)
    assert ours.order == ref.order == 1 and ours.init_noise_sigma == 1.0
    g = torch.Generator().manual_seed(0)
    x_a = x_b = torch.randn(2, 4, 8, 8, generator=g)
    for t in ref.timesteps:
        u = torch.randn(2, 4, 8, 8, generator=g)  # the step on random "velocities"
        x_a, x_b = ours.step(u, t, x_a), ref.step(u, t, x_b).prev_sample
        torch.testing.assert_close(x_a, x_b, atol=1e-6, rtol=0)
        assert ours.step_index == ref.step_index


def test_scale_noise_and_custom_sigmas_match_diffusers():
    ours, ref = FlowMatchEulerDiscreteScheduler(shift=3.0), diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 3, 2, 4, 4, generator=g)
    ts = ref.timesteps[[0, 500, 999]]  # the training grid
    torch.testing.assert_close(ours.scale_noise(x0, ts, eps), ref.scale_noise(x0, ts, eps), atol=1e-6, rtol=0)
    sigmas = [1.0, 0.75, 0.5, 0.25]  # FLUX passes its own sigmas
    ours.set_timesteps(sigmas=sigmas)
    ref.set_timesteps(sigmas=sigmas)
    torch.testing.assert_close(ours.sigmas, ref.sigmas, atol=1e-6, rtol=0)
    ts = ref.timesteps[[1, 2, 3]]
    torch.testing.assert_close(ours.scale_noise(x0, ts, eps), ref.scale_noise(x0, ts, eps), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scheme,kw,mean,middle", [
    ("logit_normal", dict(logit_mean=0.0, logit_std=1.0), 0.5, (0.70, 0.76)),
    ("logit_normal", dict(logit_mean=1.0, logit_std=1.0), 0.70, None),
    ("mode", dict(mode_scale=1.29), 0.5, (0.70, 0.77)),
    ("uniform", {}, 0.5, (0.49, 0.51)),
])
def test_timestep_densities(scheme, kw, mean, middle):
    u = compute_density_for_timestep_sampling(scheme, 50_000, generator=torch.Generator().manual_seed(0), **kw)
    ref = diffusers_density(scheme, 50_000, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(u, ref)
    assert u.min() >= 0 and u.max() <= 1 and abs(u.mean().item() - mean) < 0.01
    if middle:
        share = ((u > 0.25) & (u < 0.75)).float().mean().item()
        assert middle[0] < share < middle[1]


def test_shift_formulas():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert torch.allclose(shift_sigmas(t, 1.0), t)
    torch.testing.assert_close(time_shift(0.7, t), shift_sigmas(t, torch.tensor(0.7).exp().item()))
    torch.testing.assert_close(time_shift(2.0, t, "linear"), shift_sigmas(t, 2.0))


def test_config_round_trip(tmp_path):
    cfg = dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.4, max_image_seq_len=2048)
    ours = FlowMatchEulerDiscreteScheduler(**cfg)
    folder = ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((folder / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "FlowMatchEulerDiscreteScheduler" and saved["shift"] == 3.0
    back = FlowMatchEulerDiscreteScheduler.from_pretrained(folder)
    assert {k: v for k, v in back.config.items() if not k.startswith("_")} == \
        {k: v for k, v in ours.config.items() if not k.startswith("_")}
    theirs = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder)  # diffusers reads ours
    assert all(theirs.config[k] == v for k, v in cfg.items())
    diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(tmp_path / "theirs")  # and we read theirs
    assert FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "theirs").config.shift == 3.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="time_shift_type"):
        FlowMatchEulerDiscreteScheduler(time_shift_type="cubic")
    with pytest.raises(ValueError, match="shift"):
        FlowMatchEulerDiscreteScheduler(shift=0.0)
    with pytest.raises(NotImplementedError, match="use_karras_sigmas"):
        FlowMatchEulerDiscreteScheduler.from_config({"use_karras_sigmas": True})
    with pytest.raises(NotImplementedError, match="stochastic_sampling"):
        FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)
    with pytest.raises(TypeError, match="no config key 'shfit'"):
        FlowMatchEulerDiscreteScheduler.from_config({"shfit": 3.0})
    with pytest.raises(ValueError, match="mu"):
        FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True).set_timesteps(4)
    sched = FlowMatchEulerDiscreteScheduler()
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="set_timesteps"):
        sched.step(x, sched.timesteps[0], x)
    sched.set_timesteps(4)
    with pytest.raises(ValueError, match="not an integer"):
        sched.step(x, 3, x)
    with pytest.raises(NotImplementedError, match="scale_noise"):
        sched.add_noise(x, x, torch.tensor([1]))
    with pytest.raises(ValueError, match="logit_mean"):
        compute_density_for_timestep_sampling("logit_normal", 4)
    assert FlowMatchEulerDiscreteScheduler.from_config(DDPMScheduler().config).config.shift == 1.0  # a family config
