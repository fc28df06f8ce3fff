"""minisd.text_encoder: parity with transformers' CLIPTextModel both ways; the mini CLIP's pieces."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from minisd.text_encoder import CLIPTextConfig, CLIPTextModel, MiniCLIP, clip_loss

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=300, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=20, bos_token_id=298, eos_token_id=299, pad_token_id=299)


def _ids(eos=299, bos=298, n_pad=(0, 5, 11)):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 298, (len(n_pad), 20), generator=g)
    ids[:, 0] = bos
    for row, pad in enumerate(n_pad):
        ids[row, 19 - pad:] = eos  # eos, then padding with eos (SD 1.x)
    return ids


def _random_reference(**overrides):
    torch.manual_seed(0)
    ref = transformers.CLIPTextModel(transformers.CLIPTextConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():  # move every weight off its init value (LayerNorm 1/0, biases 0)
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return ref


@pytest.mark.parametrize("hidden_act", ["quick_gelu", "gelu"])
def test_transformers_to_minisd(tmp_path, hidden_act):
    ref = _random_reference(hidden_act=hidden_act)
    ref.save_pretrained(tmp_path)
    ours = CLIPTextModel.from_pretrained(tmp_path).eval()
    assert ours.config.hidden_act == hidden_act
    ids = _ids()
    mask = (torch.arange(20)[None] < torch.tensor([20, 15, 9])[:, None]).long()
    with torch.no_grad():
        for attention_mask in (None, mask):
            out = ref(ids, attention_mask=attention_mask)
            for fast in (True, False):
                last, pooled = ours.set_fast_attention(fast)(ids, attention_mask=attention_mask, return_pooled=True)
                assert last.shape == (3, 20, 16) and pooled.shape == (3, 16)
                assert torch.allclose(last, out.last_hidden_state, atol=1e-5)
                assert torch.allclose(pooled, out.pooler_output, atol=1e-5)


def test_minisd_to_transformers(tmp_path):
    torch.manual_seed(1)
    ours = CLIPTextModel(**TINY).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    ref = transformers.CLIPTextModel.from_pretrained(str(tmp_path)).eval()
    ids = _ids()
    with torch.no_grad():
        out = ref(ids)
        last, pooled = ours(ids, return_pooled=True)
    assert torch.allclose(last, out.last_hidden_state, atol=1e-5)
    assert torch.allclose(pooled, out.pooler_output, atol=1e-5)
    # and the weights round-trip through transformers' own save
    ref.save_pretrained(tmp_path / "again")
    again = CLIPTextModel.from_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), ours.state_dict().values()))


def test_state_dict_keys_match_transformers():
    ours = CLIPTextModel(**TINY)
    ref = transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY))
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_text_model_prefix_and_position_ids_accepted(tmp_path):
    """Old checkpoints (transformers 4.x, SD 1.5's text_encoder/) prefix keys with `text_model.`."""
    ref = _random_reference()
    ref.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    prefixed = {f"text_model.{k}": v for k, v in state.items()}
    prefixed["text_model.embeddings.position_ids"] = torch.arange(20)[None]
    prefixed["logit_scale"] = torch.tensor(2.0)  # a whole CLIPModel: other keys are ignored
    save_file(prefixed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    pipeline = tmp_path.parent / (tmp_path.name + "_pipe")
    (pipeline / "text_encoder").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (pipeline / "text_encoder" / name).write_bytes((tmp_path / name).read_bytes())
    ours = CLIPTextModel.from_pretrained(pipeline).eval()  # finds text_encoder/
    with torch.no_grad():
        assert torch.allclose(ours(_ids()), ref(_ids()).last_hidden_state, atol=1e-5)


def test_legacy_eos_token_id_2_pools_at_largest_id():
    model = CLIPTextModel(**{**TINY, "eos_token_id": 2}).eval()
    ids = _ids()
    last, pooled = model(ids, return_pooled=True)
    assert torch.equal(pooled, last[torch.arange(3), ids.argmax(-1)])


def test_config_reads_hub_json_and_rejects_bad_values():
    cfg = CLIPTextConfig.from_dict({**TINY, "architectures": ["CLIPTextModel"], "torch_dtype": "float32",
                                    "_name_or_path": "x", "transformers_version": "4.22.0"})
    assert cfg.hidden_size == 16
    assert json.loads(json.dumps(cfg.to_dict()))["model_type"] == "clip_text_model"
    with pytest.raises(ValueError, match="num_attention_heads"):
        CLIPTextConfig(hidden_size=10, num_attention_heads=3)
    with pytest.raises(ValueError, match="hidden_act"):
        CLIPTextConfig(hidden_act="relu6")
    with pytest.raises(TypeError):
        CLIPTextModel(hidden_sizes=3)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        CLIPTextModel(**TINY)(torch.zeros(1, 21, dtype=torch.long))


def test_causality_later_tokens_do_not_change_earlier_states():
    model = CLIPTextModel(**TINY).eval()
    a, b = _ids(), _ids()
    b[:, 10:] = 7
    with torch.no_grad():
        assert torch.allclose(model(a)[:, :10], model(b)[:, :10], atol=1e-6)
        assert not torch.allclose(model(a)[:, 10:], model(b)[:, 10:], atol=1e-3)


def test_clip_loss_counts_identical_captions_as_positives():
    blur = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])  # 0 and 1 not told apart
    split = torch.tensor([[10.0, -10.0, -5.0], [-10.0, 10.0, -5.0], [-5.0, -5.0, 5.0]])  # 0 and 1 pushed apart
    same = torch.tensor([0, 0, 1])  # pairs 0 and 1 share a caption
    different = torch.tensor([0, 1, 2])
    assert clip_loss(blur, same) < clip_loss(split, same)
    assert clip_loss(split, different) < clip_loss(blur, different)
    assert clip_loss(torch.eye(3) * 20, different) < 1e-6


def test_mini_clip_shapes_and_gradients():
    cfg = CLIPTextConfig(**TINY)
    clip = MiniCLIP(cfg, image_size=32, channels=(8, 16, 16), projection_dim=8)
    images, ids = torch.rand(4, 3, 32, 32), _ids(n_pad=(0, 3, 5, 7))
    logits = clip(images, ids)
    assert logits.shape == (4, 4)
    clip_loss(logits, torch.arange(4)).backward()
    assert clip.logit_scale.grad is not None and clip.text_model.embeddings.token_embedding.weight.grad.abs().sum() > 0


def test_train_mini_clip_runs_caches_and_reloads():
    from minisd.text_encoder import train_mini_clip, zero_shot_attributes
    from minisd.data import attribute_ids, images_to_tensor, load_captioned_shapes

    first = train_mini_clip("quick", steps=3, batch_size=16, progress=False, device=torch.device("cpu"))
    assert len(first.losses) == 3 and all(loss == loss for loss in first.losses)  # finite, not nan
    ids = first.tokenizer(["a large red circle in the top left"])
    assert ids.shape == (1, 77)
    states = first.text_model(ids)
    assert states.shape == (1, 77, first.text_model.config.hidden_size)
    again = train_mini_clip("quick", steps=3, batch_size=16, progress=False)  # from the cache, no training
    assert again.losses == first.losses and again.tokenizer.merges == first.tokenizer.merges
    assert torch.equal(again.text_model(ids), states)
    test = load_captioned_shapes("quick")["test"].select(range(50))
    acc = zero_shot_attributes(again.clip, again.tokenizer, images_to_tensor(test), attribute_ids(test))
    assert set(acc) == {"shape", "colour", "size", "position", "all"} and all(0 <= v <= 1 for v in acc.values())
