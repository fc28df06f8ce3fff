"""The runtime helpers of minisd.core: profiles, devices, seeding, cache folder, image grids."""

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from minisd import core

matplotlib.use("Agg")


def test_profile_from_environment(monkeypatch):
    for name in core.PROFILE_NAMES:
        monkeypatch.setenv("MINISD_PROFILE", name)
        assert core.get_profile().name == name
    monkeypatch.setenv("MINISD_PROFILE", " CPU ")
    assert core.get_profile().name == "cpu"


def test_profile_default_follows_cuda(monkeypatch):
    monkeypatch.delenv("MINISD_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert core.get_profile().name == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert core.get_profile().name == "cpu"


def test_unknown_profile_names_the_allowed_values(monkeypatch):
    monkeypatch.setenv("MINISD_PROFILE", "laptop")
    with pytest.raises(ValueError, match=r"MINISD_PROFILE must be one of quick, cpu, gpu; got 'laptop'"):
        core.get_profile()


def test_profile_sizes_and_pick():
    assert core.PROFILES["quick"].image_size == core.PROFILES["cpu"].image_size == 32
    assert core.PROFILES["gpu"].image_size == 64
    assert core.get_profile("cpu").pick(quick=1, cpu=2, gpu=3) == 2
    assert core.get_profile("gpu").pick(quick=1, cpu=2, gpu=3) == 3
    assert core.get_profile(core.PROFILES["gpu"]) is core.PROFILES["gpu"]  # a Profile passes through


def test_device_order_and_override(monkeypatch):
    monkeypatch.delenv("MINISD_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(core, "_mps_available", lambda: False)
    assert core.get_device() == torch.device("cpu")
    monkeypatch.setattr(core, "_mps_available", lambda: True)
    assert core.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert core.get_device() == torch.device("cuda")
    monkeypatch.setenv("MINISD_DEVICE", "cpu")
    assert core.get_device() == torch.device("cpu")


def test_bad_or_missing_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MINISD_DEVICE", "tpu")
    with pytest.raises(ValueError, match="MINISD_DEVICE must be one of cuda, mps, cpu"):
        core.get_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("MINISD_DEVICE", "cuda:0")
    with pytest.raises(RuntimeError, match="no cuda device"):
        core.get_device()


def test_seed_everything_repeats_every_generator():
    def draw():
        g = core.seed_everything(123)
        return np.random.rand(), torch.rand(2).tolist(), torch.rand(2, generator=g).tolist()

    assert draw() == draw()
    with pytest.raises(ValueError, match="seed"):
        core.seed_everything(-1)


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINISD_CACHE", str(tmp_path / "here"))
    assert core.cache_dir() == tmp_path / "here" and (tmp_path / "here").is_dir()


def test_image_grid_accepts_three_kinds_and_saves_png(tmp_path):
    t = torch.rand(5, 3, 8, 8)
    arrays = (t.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    pils = [Image.fromarray(a) for a in arrays]
    for i, images in enumerate([t, arrays, pils]):
        np.testing.assert_allclose(core.to_numpy_images(images), core.to_numpy_images(t), atol=1 / 255 + 1e-6)
        path = tmp_path / f"grid{i}.png"
        fig = core.image_grid(images, captions=[f"image {j}" for j in range(5)], nrow=3, path=path, show=False)
        assert len(fig.axes) == 6  # 2 rows of 3; the sixth is blank
        assert Image.open(path).format == "PNG"
    with pytest.raises(ValueError, match="captions has 2 entries for 5 images"):
        core.image_grid(t, captions=["a", "b"], show=False)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        core.to_numpy_images(torch.rand(2, 4, 8, 8))
