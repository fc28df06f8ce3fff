"""minisd.vae against diffusers: AutoencoderKL both ways through save_pretrained, the posterior and training."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

# --- AutoencoderKL ---------------------------------------------------------------------------

from minisd.vae import AutoencoderKL, DiagonalGaussianDistribution  # noqa: E402
from minisd.vae_training import psnr, train_vae  # noqa: E402

TINY = dict(block_out_channels=[4, 8], norm_num_groups=2, latent_channels=4, layers_per_block=1,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)


def _randomise(model, seed=0):
    "Random weights everywhere (biases and norms too), so no parameter can be silently skipped."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def _compare(ours, ref, x):
    ours.eval(), ref.eval()
    with torch.no_grad():
        p_ours, p_ref = ours.encode(x), ref.encode(x).latent_dist
        torch.testing.assert_close(p_ours.mode(), p_ref.mode(), atol=1e-5, rtol=0)
        torch.testing.assert_close(p_ours.logvar, p_ref.logvar, atol=1e-5, rtol=0)
        z_ours = p_ours.sample(torch.Generator().manual_seed(3))
        z_ref = p_ref.sample(torch.Generator().manual_seed(3))
        torch.testing.assert_close(z_ours, z_ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(p_ours.kl(), p_ref.kl(), atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(ours.decode(z_ours), ref.decode(z_ref).sample, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_diffusers_vae_loads_into_minisd(tmp_path, attention, layers):
    from diffusers import AutoencoderKL as RefVAE
    torch.manual_seed(0)
    ref = _randomise(RefVAE(**{**TINY, "layers_per_block": layers}, mid_block_add_attention=attention))
    ref.save_pretrained(tmp_path)
    ours = AutoencoderKL.from_pretrained(tmp_path)  # strict keys inside
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert ours.config.mid_block_add_attention is attention and ours.config.scaling_factor == 0.18215
    _compare(ours, ref, torch.rand(2, 3, 16, 16) * 2 - 1)


@pytest.mark.parametrize("attention", [True, False])
def test_minisd_vae_loads_into_diffusers(tmp_path, attention):
    from diffusers import AutoencoderKL as RefVAE
    ours = _randomise(AutoencoderKL(**TINY, mid_block_add_attention=attention, scaling_factor=0.5), seed=1)
    ours.save_pretrained(tmp_path)
    ref = RefVAE.from_pretrained(tmp_path)
    assert ref.config.scaling_factor == 0.5 and ref.config.mid_block_add_attention is attention
    missing = set(ref.state_dict()) ^ set(ours.state_dict())
    assert not missing
    _compare(ours, ref, torch.rand(2, 3, 16, 16) * 2 - 1)


def test_state_dict_keys_equal_diffusers_for_three_levels():
    from diffusers import AutoencoderKL as RefVAE
    cfg = dict(block_out_channels=[8, 16, 16], norm_num_groups=4, layers_per_block=2,
               down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3)
    ours, ref = AutoencoderKL(**cfg), RefVAE(**cfg)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert ours.encode(torch.zeros(1, 3, 32, 32)).mode().shape == (1, 4, 8, 8)


def test_old_attention_key_names_are_read(tmp_path):
    from safetensors.torch import load_file, save_file
    ours = _randomise(AutoencoderKL(**TINY))
    ours.save_pretrained(tmp_path)
    state = load_file(tmp_path / "diffusion_pytorch_model.safetensors")
    old = {k.replace(".to_q.", ".query.").replace(".to_out.0.", ".proj_attn."): v for k, v in state.items()}
    save_file(old, tmp_path / "diffusion_pytorch_model.safetensors")
    again = AutoencoderKL.from_pretrained(tmp_path)
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(again(x), ours(x))


def test_bad_config_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="down_block_types"):
        AutoencoderKL(down_block_types=["DownBlock2D"])
    with pytest.raises(FileNotFoundError, match="config.json"):
        AutoencoderKL.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        AutoencoderKL.from_pretrained(tmp_path)


def test_distribution_sample_kl_nll_against_torch():
    torch.manual_seed(0)
    params = torch.randn(3, 8, 2, 2)
    d = DiagonalGaussianDistribution(params)
    ref = torch.distributions.Normal(d.mean, d.std)
    prior = torch.distributions.Normal(torch.zeros_like(d.mean), torch.ones_like(d.mean))
    torch.testing.assert_close(d.kl(), torch.distributions.kl_divergence(ref, prior).sum((1, 2, 3)))
    other = DiagonalGaussianDistribution(torch.randn(3, 8, 2, 2))
    torch.testing.assert_close(
        d.kl(other),
        torch.distributions.kl_divergence(ref, torch.distributions.Normal(other.mean, other.std)).sum((1, 2, 3)))
    z = d.sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(d.nll(z), -ref.log_prob(z).sum((1, 2, 3)))
    assert torch.equal(z, d.mean + d.std * torch.randn(d.mean.shape, generator=torch.Generator().manual_seed(0)))
    big = DiagonalGaussianDistribution(torch.cat([torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 100.0)], 1))
    assert big.logvar.item() == 20.0  # clamped


@pytest.fixture
def one_thread():
    "Tiny models train much faster on one thread when other jobs share the cores."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_train_vae_reduces_loss_and_psnr(one_thread):
    torch.manual_seed(0)
    images = torch.zeros(64, 3, 16, 16)
    images[:, 0, 4:12, 4:12] = torch.rand(64, 1, 1)  # squares of random red
    model = AutoencoderKL(**TINY)
    before = psnr((model(images * 2 - 1).detach() + 1) / 2, images).mean()
    hist = train_vae(model, images, steps=60, batch_size=16, lr=3e-3, warmup=5, progress=False)
    assert set(hist) == {"loss", "rec", "kl"} and len(hist["loss"]) == 60
    assert sum(hist["loss"][-10:]) < 0.5 * sum(hist["loss"][:10])
    after = psnr(((model(images * 2 - 1).detach() + 1) / 2).clamp(0, 1), images).mean()
    assert after > before + 3
    assert psnr(images, images).min() > 100
