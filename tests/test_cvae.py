"""minisd.cvae: conditions from captions, shapes of the model, the loss, training, sampling, sharpness."""

import pytest
import torch

from minisd.cvae import ConditionalVAE, caption_to_condition, sharpness, train_cvae
from minisd.data import ATTRIBUTES, caption_from_attributes


def test_caption_to_condition_indices_and_missing_size():
    caps = [caption_from_attributes("triangle", "cyan", "small", "bottom right"),
            caption_from_attributes("circle", "red", None, "center")]
    cond = caption_to_condition(caps)
    assert cond.dtype == torch.long and cond.shape == (2, 4)
    assert cond[0].tolist() == [ATTRIBUTES["shape"].index("triangle"), ATTRIBUTES["colour"].index("cyan"),
                                ATTRIBUTES["size"].index("small"), ATTRIBUTES["position"].index("bottom right")]
    assert cond[1, 2].item() == len(ATTRIBUTES["size"])  # "not given" row


def test_model_shapes_loss_and_kl():
    torch.manual_seed(0)
    model = ConditionalVAE(image_size=16, latent_dim=5, channels=(4, 8), embed_dim=3, hidden=16)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    cond = caption_to_condition(["a red circle in the center"] * 3)
    q = model.encode(x, cond)
    assert q.mean.shape == (3, 5, 1, 1)
    assert model.decode(q.mode(), cond).shape == (3, 3, 16, 16)
    loss, rec, kl = model.loss(x, cond, beta=2.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, rec + 2.0 * kl)
    assert kl.item() >= 0
    # the loss uses the posterior sample: recompute it by hand with the same generator
    z = q.sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(rec, ((model.decode(z, cond) - x) ** 2).sum((1, 2, 3)).mean())
    with pytest.raises(ValueError, match="image_size"):
        ConditionalVAE(image_size=30)


def test_condition_changes_the_output():
    torch.manual_seed(0)
    model = ConditionalVAE(image_size=16, latent_dim=4, channels=(4, 8), hidden=16)
    z = torch.randn(1, 4)
    a = model.decode(z, caption_to_condition(["a red circle in the center"]))
    b = model.decode(z, caption_to_condition(["a blue square in the top left"]))
    assert not torch.allclose(a, b)


def test_training_learns_colour_from_condition():
    "Two classes: red squares and blue squares; after training, generate() gives the asked colour."
    torch.manual_seed(0)
    n = 64
    images = torch.zeros(n, 3, 16, 16)
    images[: n // 2, 0, 4:12, 4:12] = 1.0
    images[n // 2:, 2, 4:12, 4:12] = 1.0
    caps = ["a red square in the center"] * (n // 2) + ["a blue square in the center"] * (n // 2)
    model = ConditionalVAE(image_size=16, latent_dim=2, channels=(8, 8), embed_dim=4, hidden=32)
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hist = train_cvae(model, images, caption_to_condition(caps), steps=150, batch_size=16, lr=5e-3, progress=False)
    finally:
        torch.set_num_threads(n_threads)
    assert len(hist["loss"]) == 150 and sum(hist["loss"][-10:]) < 0.5 * sum(hist["loss"][:10])
    out = model.generate(["a red square in the center", "a blue square in the center"] * 4,
                         generator=torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1
    centre = out[:, :, 6:10, 6:10].mean((2, 3))  # (8, 3) mean colour in the middle
    assert (centre[0::2, 0] > centre[0::2, 2] + 0.3).all() and (centre[1::2, 2] > centre[1::2, 0] + 0.3).all()
    with pytest.raises(ValueError, match="same length"):
        train_cvae(model, images, caption_to_condition(caps[:3]), steps=1)


def test_sharpness_measure():
    flat = torch.full((2, 3, 8, 8), 0.7)
    assert torch.all(sharpness(flat) == 0)
    sharp = torch.zeros(1, 3, 16, 16)
    sharp[..., 4:12, 4:12] = 1
    padded = torch.nn.functional.pad(sharp, (2, 2, 2, 2), mode="replicate")
    blurred = torch.nn.functional.avg_pool2d(padded, 5, stride=1)
    assert sharpness(sharp).item() > 1.5 * sharpness(blurred).item() > 0
