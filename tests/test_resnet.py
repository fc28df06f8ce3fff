"""minisd.resnet against diffusers: the ResNet, down- and upsampling blocks with the same weights."""

import pytest
import torch

from minisd.resnet import ACTIVATIONS, Downsample2D, ResnetBlock2D, Upsample2D, get_activation

diffusers = pytest.importorskip("diffusers")
from diffusers.models.downsampling import Downsample2D as RefDown  # noqa: E402
from diffusers.models.resnet import ResnetBlock2D as RefResnet  # noqa: E402
from diffusers.models.upsampling import Upsample2D as RefUp  # noqa: E402


def _copy_and_compare(ours, ref, *args, atol=1e-5):
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval(), ref.eval()
    with torch.no_grad():
        a, b = ours(*args), ref(*args)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize(
    "kw",
    [
        dict(in_channels=8, out_channels=16, temb_channels=32, groups=4),
        dict(in_channels=8, out_channels=8, temb_channels=32, groups=4, output_scale_factor=2.0),
        dict(in_channels=8, out_channels=16, temb_channels=32, groups=4, groups_out=8,
             time_embedding_norm="scale_shift"),
        dict(in_channels=8, out_channels=8, temb_channels=None, groups=2),
        dict(in_channels=8, out_channels=4, temb_channels=None, groups=2, eps=1e-5),
    ],
)
def test_resnet_block_matches_diffusers(kw):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    temb = torch.randn(2, 32) if kw["temb_channels"] else None
    _copy_and_compare(ResnetBlock2D(**kw), RefResnet(**kw), x, temb)


def test_resnet_block_without_time_has_no_projection():
    block = ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=None, groups=2)
    assert block.time_emb_proj is None and block.conv_shortcut is None
    assert "conv_shortcut.weight" in ResnetBlock2D(in_channels=4, out_channels=8, groups=2).state_dict()


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("size", [8, 7])
def test_downsample_matches_diffusers(padding, size):
    torch.manual_seed(0)
    x = torch.randn(2, 4, size, size)
    _copy_and_compare(Downsample2D(4, use_conv=True, out_channels=6, padding=padding, name="op"),
                      RefDown(4, use_conv=True, out_channels=6, padding=padding, name="op"), x)


def test_downsample_avgpool_and_upsample_matches_diffusers():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    _copy_and_compare(Downsample2D(4, use_conv=False), RefDown(4, use_conv=False), x)
    _copy_and_compare(Upsample2D(4, use_conv=True, out_channels=6), RefUp(4, use_conv=True, out_channels=6), x)
    ours = Upsample2D(4, use_conv=True)
    assert ours(x, output_size=(15, 17)).shape == (2, 4, 15, 17)


def test_blocks_reject_bad_arguments():
    with pytest.raises(ValueError, match="non_linearity"):
        ResnetBlock2D(in_channels=4, non_linearity="tanh", groups=2)
    with pytest.raises(ValueError, match="time_embedding_norm"):
        ResnetBlock2D(in_channels=4, time_embedding_norm="spatial", groups=2)
    with pytest.raises(ValueError, match="channels"):
        Downsample2D(4)(torch.zeros(1, 3, 8, 8))


def test_activations_are_the_named_functions():
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(get_activation("silu")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(get_activation("quick_gelu")(x), x * torch.sigmoid(1.702 * x))
    torch.testing.assert_close(get_activation("gelu")(x), torch.nn.functional.gelu(x))
    assert set(ACTIVATIONS) >= {"swish", "silu", "mish", "gelu", "relu", "quick_gelu"}
    with pytest.raises(ValueError, match="hidden_act must be one of"):
        get_activation("relu6", "hidden_act")
