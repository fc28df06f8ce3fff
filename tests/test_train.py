"""Training (chapter 08b): resume exactness, atomic checkpoints, the bf16 path, the learning-rate schedule.

The main job (`demo`) and the command line are tested in test_evaluate.py.
"""

import pytest
import torch
from safetensors.torch import load_file

from minisd import train as T
from minisd import training_utils
from minisd.data import images_to_tensor, make_captioned_shapes
from minisd.recipes import fold_latent_stats
from minisd.training_utils import lr_at

SPLITS_SMALL = dict(image_size=32, n_train=64, n_test=8, n_heldout=8)


def make_tiny_parts():
    "A VAE and a text encoder trained for a few steps: enough to test the UNet stage quickly."
    splits = make_captioned_shapes(**SPLITS_SMALL, seed=0)
    cfg = T.config_for("quick", vae_steps=2, clip={"steps": 2}, unet_steps=6, unet_batch=4, checkpoint_every=2,
                       warmup=2)
    vae, _ = T.train_vae_stage(cfg, splits, "cpu", progress=False)
    text_encoder, tokenizer, _ = T.train_text_stage(cfg, splits, "cpu", progress=False)
    return cfg, splits, vae, text_encoder, tokenizer


@pytest.fixture(scope="module")
def tiny_parts():
    return make_tiny_parts()


def _unet_run(tiny_parts, folder, stop_after=None, resume=False, **overrides):
    cfg, splits, vae, text_encoder, tokenizer = tiny_parts
    cfg = T.replace(cfg, **overrides)
    return T.train_unet_stage(cfg, vae, text_encoder, tokenizer, splits["train"], folder, "cpu", resume=resume,
                              stop_after=stop_after, progress=False)


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_report(tiny_parts, tmp_path):
    cfg, splits = tiny_parts[:2]
    _, report = T.train(cfg, tmp_path, splits=splits, device="cpu", progress=False)
    _, again = T.train(cfg, tmp_path, splits=splits, device="cpu", progress=False, resume=True)
    # `demo --resume` after a crash in the evaluation once reported 113,840 images/s and a 12 s UNet stage here
    for key in ("unet_seconds", "unet_images_per_second", "vae_seconds", "text_seconds", "unet_final_loss"):
        assert again[key] == report[key], key
    _, losses, metrics = _unet_run(tiny_parts, tmp_path, resume=True)
    assert len(losses) == cfg.unet_steps and "unet_images_per_second" not in metrics


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_parts, tmp_path):
    ema_a, losses_a, _ = _unet_run(tiny_parts, tmp_path / "a")
    state_a = load_file(tmp_path / "a" / T.STATE_NAME)
    _unet_run(tiny_parts, tmp_path / "b", stop_after=3)  # interrupted after step 3 (a checkpoint at 2 and 3)
    assert load_file(tmp_path / "b" / T.STATE_NAME)["losses"].numel() == 3
    ema_b, losses_b, _ = _unet_run(tiny_parts, tmp_path / "b", resume=True)
    assert losses_b == losses_a
    for (k, a), (_, b) in zip(ema_a.state_dict().items(), ema_b.state_dict().items()):
        assert torch.equal(a, b), k
    state_b = load_file(tmp_path / "b" / T.STATE_NAME)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_checkpoint_is_written_atomically(tiny_parts, tmp_path, monkeypatch):
    _unet_run(tiny_parts, tmp_path, stop_after=2)
    before = (tmp_path / T.STATE_NAME).read_bytes()

    def crash(tensors, path, metadata=None):  # the disk fills up half-way through the next checkpoint
        path.write_bytes(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(training_utils, "save_file", crash)  # where checkpoints are written
    with pytest.raises(OSError, match="disk full"):
        _unet_run(tiny_parts, tmp_path, resume=True)
    assert (tmp_path / T.STATE_NAME).read_bytes() == before  # the last good checkpoint is untouched
    assert not list(tmp_path.glob("*.tmp"))  # and no half-written file is left beside it


def test_a_non_finite_loss_stops_the_run_and_keeps_the_checkpoint(tiny_parts, tmp_path, monkeypatch):
    _unet_run(tiny_parts, tmp_path, stop_after=2)
    before = (tmp_path / T.STATE_NAME).read_bytes()
    mse, calls = torch.nn.functional.mse_loss, []

    def poisoned(*args, **kwargs):  # the loss turns NaN at the second step after resuming (step 4)
        calls.append(1)
        return mse(*args, **kwargs) * (float("nan") if len(calls) == 2 else 1.0)
    monkeypatch.setattr(torch.nn.functional, "mse_loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 4; .* keeps the last good checkpoint"):
        _unet_run(tiny_parts, tmp_path, resume=True, checkpoint_every=10)
    assert (tmp_path / T.STATE_NAME).read_bytes() == before


def test_two_runs_cannot_share_an_output_folder(tmp_path):
    from minisd.modeling import claim_folder
    with claim_folder(tmp_path) as lock:
        assert lock.read_text() == str(__import__("os").getpid())
        lock.write_text("1")  # pid 1 is always alive: another run holds the folder
        with pytest.raises(RuntimeError, match="is in use by process 1"):
            with claim_folder(tmp_path):
                pass
        lock.write_text("999999999")  # no such process: a stale lock from a killed run is taken over
        with claim_folder(tmp_path) as again:
            assert again.read_text() == str(__import__("os").getpid())
    assert not lock.exists()  # released when the block ends


def test_bf16_autocast_path_runs_on_cpu(tiny_parts, tmp_path):
    "The CUDA training path (bf16 autocast) is the same code; on the CPU it can run too."
    _, losses, metrics = _unet_run(tiny_parts, tmp_path, unet_steps=2, mixed_precision="bf16")
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    with pytest.raises(ValueError, match="mixed_precision must be auto, bf16 or no"):
        _unet_run(tiny_parts, tmp_path / "x", unet_steps=1, mixed_precision="fp8")


def test_lr_schedule_warms_up_then_decays():
    cfg = T.config_for("cpu")
    lrs = [lr_at(s, cfg) for s in range(cfg.unet_steps)]
    assert lrs[0] == pytest.approx(cfg.unet_lr / cfg.warmup)
    assert max(lrs) == pytest.approx(cfg.unet_lr, rel=1e-3)
    assert lrs[-1] == pytest.approx(cfg.unet_lr * 0.1, rel=1e-2)


def test_random_crops_are_windows_of_each_image_and_check_their_size():
    images = torch.rand(5, 3, 12, 12)
    crops = T.random_crops(images, 5, seed=3)
    assert crops.shape == (5, 3, 5, 5)
    for image, crop in zip(images, crops):  # each crop is some 5x5 window of its own image
        assert any(torch.equal(crop, image[:, a:a + 5, b:b + 5]) for a in range(8) for b in range(8))
    assert torch.equal(crops, T.random_crops(images, 5, seed=3))
    assert not torch.equal(crops, T.random_crops(images, 5, seed=4))
    with pytest.raises(ValueError, match="crop size"):
        T.random_crops(images, 13)


def test_fold_latent_stats_standardises_each_channel_and_decodes_the_same(tiny_parts):
    cfg, splits, vae, *_ = tiny_parts
    from minisd.vae import AutoencoderKL
    from minisd.vae_training import decode_latents, encode_images

    vae = AutoencoderKL.from_config(vae.config)
    vae.load_state_dict(tiny_parts[2].state_dict())
    images = images_to_tensor(splits["train"])
    before = encode_images(vae, images)
    recon = decode_latents(vae, before)
    mean, std = fold_latent_stats(vae, before)
    torch.testing.assert_close(mean, before.mean((0, 2, 3)))
    after = encode_images(vae, images)
    torch.testing.assert_close(after, (before - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(after.mean((0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(after.std((0, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(decode_latents(vae, after), recon, atol=1e-5, rtol=0)
    posterior = vae.encode(images[:2] * 2 - 1)  # the log variance moves with the scale: var' = var / s^2
    old = tiny_parts[2].encode(images[:2] * 2 - 1)
    torch.testing.assert_close(posterior.logvar, (old.logvar - 2 * std.log().view(1, -1, 1, 1)).clamp(-30, 20),
                               atol=1e-4, rtol=1e-4)
    assert vae.config.scaling_factor == 1.0
    with pytest.raises(ValueError, match="latents must be"):
        fold_latent_stats(vae, before[:, :3])


def test_standardise_latents_flag_changes_only_the_latent_statistics():
    splits = make_captioned_shapes(**SPLITS_SMALL, seed=0)
    cfg = T.config_for("quick", vae_steps=2)
    plain, plain_metrics = T.train_vae_stage(cfg, splits, "cpu", progress=False)
    folded, folded_metrics = T.train_vae_stage(T.replace(cfg, standardise_latents=True), splits, "cpu", progress=False)
    assert plain_metrics["scaling_factor"] != 1.0 and folded_metrics["scaling_factor"] == 1.0
    assert "latent_channel_std" not in plain_metrics and len(folded_metrics["latent_channel_std"]) == 4
    assert folded_metrics["vae_psnr_test_db"] == pytest.approx(plain_metrics["vae_psnr_test_db"], abs=1e-3)
    changed = {k for k, v in plain.state_dict().items() if not torch.equal(v, folded.state_dict()[k])}
    assert changed == {"quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias"}


def test_text_data_chooses_what_the_mini_clip_learns_from(monkeypatch):
    seen = []

    def fake_train_mini_clip(profile, dataset=None, **kwargs):
        seen.append(dataset)
        raise StopIteration  # stop before training: only the data matters here

    monkeypatch.setattr(T, "train_mini_clip", fake_train_mini_clip)
    splits = make_captioned_shapes(**SPLITS_SMALL, seed=5)
    cfg = T.config_for("quick")
    for text_data in T.TEXT_DATA:
        with pytest.raises(StopIteration):
            T.train_text_stage(T.replace(cfg, text_data=text_data), splits, "cpu", progress=False)
    assert seen[0] is splits
    assert seen[1]["train"]["caption"] == T.load_captioned_shapes("quick", seed=cfg.seed)["train"]["caption"]
    with pytest.raises(ValueError, match="text_data must be one of"):
        T.train_text_stage(T.replace(cfg, text_data="scenes"), splits, "cpu", progress=False)


def test_init_from_starts_every_part_from_the_folder_and_keeps_the_scaling_factor(tmp_path):
    splits = make_captioned_shapes(**SPLITS_SMALL, seed=0)
    cfg = T.config_for("quick", vae_steps=2, clip={"steps": 2}, unet_steps=2, unet_batch=4, warmup=1)
    source, _ = T.train(cfg, tmp_path / "source", splits=splits, device="cpu", progress=False)
    tuned = training_utils.fine_tune_config(T.replace(cfg, vae_lr=0.0, unet_lr=0.0), tmp_path / "source")
    assert tuned.init_from == str(tmp_path / "source") and "cross_attention_dim" not in tuned.unet
    assert tuned.vae["scaling_factor"] == source.vae.config.scaling_factor
    other = make_captioned_shapes(**SPLITS_SMALL, seed=1)  # new data; at lr 0 nothing may move
    pipe, report = T.train(tuned, tmp_path / "tuned", splits=other, device="cpu", progress=False)
    assert "clip_final_loss" not in report  # the text encoder was taken, not trained
    for part in ("vae", "text_encoder", "unet"):
        a, b = getattr(source, part).state_dict(), getattr(pipe, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert pipe.vae.config.scaling_factor == source.vae.config.scaling_factor
    assert pipe.tokenizer.encoder == source.tokenizer.encoder
    wider = T.replace(tuned, unet={**tuned.unet, "block_out_channels": [32, 32]})  # not the folder's UNet
    with pytest.raises(RuntimeError, match="size mismatch"):
        T.train(wider, tmp_path / "tuned", stages=("unet",), splits=other, device="cpu", progress=False)


def test_text_encoder_lr_trains_the_encoder_beside_the_unet_and_resumes_exactly(tiny_parts, tmp_path):
    _, _, _, text_encoder, _ = tiny_parts
    pair_a, losses_a, metrics = _unet_run(tiny_parts, tmp_path / "a", text_encoder_lr=1e-4)
    assert isinstance(pair_a, training_utils.UNetWithTextEncoder)
    assert metrics["unet_parameters"] == sum(p.numel() for p in pair_a.unet.parameters())  # the UNet's alone
    moved = [k for k, v in text_encoder.state_dict().items() if not torch.equal(v, pair_a.text_encoder.state_dict()[k])]
    assert "embeddings.token_embedding.weight" in moved  # the diffusion loss reached the encoder's embeddings
    assert all(not p.requires_grad for p in text_encoder.parameters())  # the caller's encoder is left as it was
    _unet_run(tiny_parts, tmp_path / "b", stop_after=3, text_encoder_lr=1e-4)
    pair_b, losses_b, _ = _unet_run(tiny_parts, tmp_path / "b", resume=True, text_encoder_lr=1e-4)
    assert losses_b == losses_a
    a, b = pair_a.state_dict(), pair_b.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = load_file(tmp_path / "a" / T.STATE_NAME)
    assert any(k.startswith("unet.text_encoder.") for k in state) and any(k.startswith("ema.unet.") for k in state)


def test_the_text_encoders_param_group_follows_the_schedule_at_its_own_rate():
    cfg = T.config_for("quick", unet_lr=1e-3, unet_steps=10, warmup=2)
    unet, text = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    pair = torch.nn.Module()
    pair.unet, pair.text_encoder = unet, text
    optimizer = torch.optim.AdamW(training_utils.UNetWithTextEncoder.param_groups(pair, lr_scale=0.05))
    loss = (unet(torch.ones(1, 2)) + text(torch.ones(1, 2))).sum()
    training_utils.optimizer_step(pair, T.copy.deepcopy(pair), optimizer, loss, 4, cfg)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([lr_at(4, cfg), lr_at(4, cfg) * 0.05])


def test_train_saves_the_text_encoder_it_trained_and_samples_with_it(tmp_path):
    splits = make_captioned_shapes(**SPLITS_SMALL, seed=0)
    cfg = T.config_for("quick", vae_steps=2, clip={"steps": 2}, unet_steps=2, unet_batch=4, warmup=1)
    source, _ = T.train(cfg, tmp_path / "source", splits=splits, device="cpu", progress=False)
    tuned = training_utils.fine_tune_config(T.replace(cfg, text_encoder_lr=1e-3), tmp_path / "source")
    pipe, _ = T.train(tuned, tmp_path / "tuned", splits=splits, device="cpu", progress=False)
    saved = T.CLIPTextModel.from_pretrained(tmp_path / "tuned" / "text_encoder")
    for model in (pipe.text_encoder, saved):
        assert not torch.equal(model.embeddings.token_embedding.weight,
                               source.text_encoder.embeddings.token_embedding.weight)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), pipe.text_encoder.state_dict().values()))
    kept, _ = T.train(T.replace(tuned, text_encoder_lr=0.0), tmp_path / "kept", splits=splits, device="cpu",
                      progress=False)  # 0: frozen, as before
    assert torch.equal(kept.text_encoder.embeddings.token_embedding.weight,
                       source.text_encoder.embeddings.token_embedding.weight)


def test_the_stages_train_one_at_a_time_into_a_new_folder(tmp_path):
    # `train --stage vae`, then `--stage text`, then `--stage unet`: the first two have no UNet to build a
    # pipeline with (they returned an error after saving their part); the last finds both parts and completes it
    splits = make_captioned_shapes(**SPLITS_SMALL, seed=0)
    cfg = T.config_for("quick", vae_steps=2, clip={"steps": 2}, unet_steps=2, unet_batch=4, warmup=1)
    folder = tmp_path / "run"
    pipe, report = T.train(cfg, folder, stages=("vae",), splits=splits, device="cpu", progress=False)
    assert pipe is None and (folder / "vae").is_dir() and not (folder / "text_encoder").exists()
    assert "vae_seconds" in report and "text_seconds" not in report
    pipe, report = T.train(cfg, folder, stages=("text",), splits=splits, device="cpu", progress=False)
    assert pipe is None and (folder / "text_encoder").is_dir() and "vae_seconds" in report  # the report accumulates
    pipe, _ = T.train(cfg, folder, stages=("unet",), splits=splits, device="cpu", progress=False)
    assert pipe is not None and (folder / "model_index.json").exists()
    whole, _ = T.train(cfg, tmp_path / "whole", splits=splits, device="cpu", progress=False)  # one call, same weights
    for part in ("vae", "text_encoder", "unet"):
        a, b = getattr(whole, part).state_dict(), getattr(pipe, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    with pytest.raises(FileNotFoundError, match="train the vae stage first"):
        T.train(cfg, tmp_path / "empty", stages=("unet",), splits=splits, device="cpu", progress=False)


def test_the_ema_follows_diffusers_ema_model_update_by_update():
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 3)
    ema, reference = T.copy.deepcopy(model), EMAModel(model.parameters(), decay=0.999)  # no use_ema_warmup
    for step in range(40):
        with torch.no_grad():  # an "update"
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        training_utils.ema_update(ema, model, step, 0.999)
        reference.step(model.parameters())
        for a, b in zip(ema.parameters(), reference.shadow_params):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # after the k-th update (k = 40) the decay in force is min(0.999, k / (9 + k)): the warm-up, not 0.999
    assert reference.cur_decay_value == pytest.approx(40 / 49)
