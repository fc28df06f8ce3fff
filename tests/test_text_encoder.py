"""minisd.text_encoder: parity with transformers' CLIPTextModel both ways; the model contract of chapters 00c-00d."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from minisd.attention import set_fast_attention
from minisd.text_encoder import CLIPAttention, CLIPTextConfig, CLIPTextModel

TINY = dict(vocab_size=300, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=20, bos_token_id=298, eos_token_id=299, pad_token_id=299)


@pytest.fixture
def transformers():
    return pytest.importorskip("transformers")


def _ids(eos=299, bos=298, n_pad=(0, 5, 11)):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 298, (len(n_pad), 20), generator=g)
    ids[:, 0] = bos
    for row, pad in enumerate(n_pad):
        ids[row, 19 - pad:] = eos  # eos, then padding with eos (SD 1.x)
    return ids


def _random_reference(transformers, **overrides):
    torch.manual_seed(0)
    ref = transformers.CLIPTextModel(transformers.CLIPTextConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():  # move every weight off its init value (LayerNorm 1/0, biases 0)
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return ref


def _saved(tmp_path, **config_changes):
    "A tiny model saved in `tmp_path`, its config.json then edited with `config_changes`."
    torch.manual_seed(0)
    folder = CLIPTextModel(**TINY).save_pretrained(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


# parity with transformers


@pytest.mark.parametrize("hidden_act", ["quick_gelu", "gelu"])
def test_transformers_to_minisd(tmp_path, transformers, hidden_act):
    ref = _random_reference(transformers, hidden_act=hidden_act)
    ref.save_pretrained(tmp_path)
    ours = CLIPTextModel.from_pretrained(tmp_path)
    assert ours.config.hidden_act == hidden_act
    ids = _ids()
    mask = (torch.arange(20)[None] < torch.tensor([20, 15, 9])[:, None]).long()
    with torch.no_grad():
        for attention_mask in (None, mask):
            out = ref(ids, attention_mask=attention_mask)
            for fast in (True, False):
                last, pooled = set_fast_attention(ours, fast)(ids, attention_mask=attention_mask, return_pooled=True)
                assert last.shape == (3, 20, 16) and pooled.shape == (3, 16)
                assert torch.allclose(last, out.last_hidden_state, atol=1e-5)
                assert torch.allclose(pooled, out.pooler_output, atol=1e-5)


def test_minisd_to_transformers(tmp_path, transformers):
    torch.manual_seed(1)
    ours = CLIPTextModel(**TINY).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    assert ours.save_pretrained(tmp_path) == tmp_path
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
    assert set(again.state_dict()) == set(ours.state_dict())
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ours.state_dict().items())


def test_state_dict_keys_match_transformers(transformers):
    ours = CLIPTextModel(**TINY)
    ref = transformers.CLIPTextModel(transformers.CLIPTextConfig(**TINY))
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_transformers_4_checkpoint_with_text_model_prefix_loads(tmp_path, transformers):
    """Old checkpoints (transformers 4.x, SD 1.5's text_encoder/) prefix keys with `text_model.`,
    store `position_ids`, and write `dropout` and `torch_dtype` in config.json."""
    ref = _random_reference(transformers)
    folder = tmp_path / "pipe" / "text_encoder"
    ref.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    prefixed = {f"text_model.{k}": v for k, v in state.items()}
    prefixed["text_model.embeddings.position_ids"] = torch.arange(20)[None]
    prefixed["logit_scale"] = torch.tensor(2.0)  # a whole CLIPModel: the keys outside text_model. are dropped
    save_file(prefixed, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config.pop("dtype", None)
    config.update(dropout=0.0, torch_dtype="float32", transformers_version="4.22.0.dev0",
                  _name_or_path="openai/clip-vit-large-patch14")
    (folder / "config.json").write_text(json.dumps(config))
    ours = CLIPTextModel.from_pretrained(tmp_path / "pipe", subfolder="text_encoder")
    with torch.no_grad():
        assert torch.allclose(ours(_ids()), ref(_ids()).last_hidden_state, atol=1e-5)


# the model contract (chapters 00c-00d)


def test_save_pretrained_returns_the_folder_and_writes_transformers_files(tmp_path):
    model = CLIPTextModel(**TINY)
    folder = model.save_pretrained(tmp_path / "te")
    assert folder == tmp_path / "te"
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["CLIPTextModel"] and config["model_type"] == "clip_text_model"
    assert not any(k.startswith("_") for k in config)  # no diffusers _class_name in a transformers file
    assert set(load_file(folder / "model.safetensors")) == set(model.state_dict())


def test_from_pretrained_returns_eval_mode_device_and_dtype(tmp_path):
    folder = _saved(tmp_path)
    model = CLIPTextModel.from_pretrained(folder)
    assert not model.training and not any(m.training for m in model.modules())
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    double = CLIPTextModel.from_pretrained(folder, dtype=torch.float64)
    assert double.dtype == torch.float64 and not double.training


def test_from_pretrained_reads_safetensors_only(tmp_path):
    folder = _saved(tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        CLIPTextModel.from_pretrained(folder)


def test_unknown_config_key_is_refused_naming_key_and_file(tmp_path):
    folder = _saved(tmp_path, hiden_size=32)
    with pytest.raises(TypeError, match="hiden_size") as err:
        CLIPTextModel.from_pretrained(folder)
    assert str(folder / "config.json") in str(err.value)


def test_dropout_is_accepted_only_at_zero(tmp_path):
    assert CLIPTextModel.from_pretrained(_saved(tmp_path / "a", dropout=0.0)).config.hidden_size == 16
    with pytest.raises(NotImplementedError, match="dropout"):
        CLIPTextModel.from_pretrained(_saved(tmp_path / "b", dropout=0.1))
    with pytest.raises(NotImplementedError, match="attention_dropout"):
        CLIPTextModel.from_pretrained(_saved(tmp_path / "c", attention_dropout=0.1))


def test_config_reads_hub_json_and_rejects_bad_values():
    cfg = CLIPTextConfig.from_dict({**TINY, "architectures": ["CLIPTextModel"], "torch_dtype": "float32",
                                    "_name_or_path": "x", "transformers_version": "4.22.0", "dropout": 0.0})
    assert cfg.hidden_size == 16
    assert json.loads(json.dumps(cfg.to_dict()))["model_type"] == "clip_text_model"
    with pytest.raises(TypeError, match="text_config"):  # a CLIPModel's config is not a text config
        CLIPTextConfig.from_dict({**TINY, "text_config": {}})
    with pytest.raises(ValueError, match="num_attention_heads"):
        CLIPTextConfig(hidden_size=10, num_attention_heads=3)
    with pytest.raises(ValueError, match="hidden_act"):
        CLIPTextConfig(hidden_act="relu6")
    with pytest.raises(TypeError, match="hidden_sizes"):
        CLIPTextModel(hidden_sizes=3)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        CLIPTextModel(**TINY)(torch.zeros(1, 21, dtype=torch.long))


def test_config_is_frozen_and_changes_through_register_to_config():
    model = CLIPTextModel(**TINY)
    other = CLIPTextModel(model.config)
    with pytest.raises(AttributeError):
        model.config.eos_token_id = 2
    model.register_to_config(eos_token_id=2)
    assert model.config.eos_token_id == 2 and other.config.eos_token_id == 299
    with pytest.raises(TypeError, match="hiden"):
        model.register_to_config(hiden=1)
    with pytest.raises(ValueError, match="hidden_act"):
        model.register_to_config(hidden_act="relu6")
    assert CLIPTextModel.from_config(model.config, vocab_size=400).config.vocab_size == 400


def test_set_fast_attention_reaches_clip_attention():
    model = CLIPTextModel(**TINY).eval()
    attentions = [m for m in model.modules() if isinstance(m, CLIPAttention)]
    assert len(attentions) == TINY["num_hidden_layers"] and all(a.use_fast for a in attentions)
    with torch.no_grad():
        fast = model(_ids())
        assert set_fast_attention(model, False) is model
        assert not any(a.use_fast for a in attentions)
        assert torch.allclose(model(_ids()), fast, atol=1e-5)
    set_fast_attention(model)
    assert all(a.use_fast for a in attentions)
    assert not hasattr(model, "set_fast_attention")  # one function for every model, no method


# behaviour


def test_legacy_eos_token_id_2_pools_at_largest_id():
    model = CLIPTextModel(**{**TINY, "eos_token_id": 2}).eval()
    ids = _ids()
    last, pooled = model(ids, return_pooled=True)
    assert torch.equal(pooled, last[torch.arange(3), ids.argmax(-1)])


def test_causality_later_tokens_do_not_change_earlier_states():
    model = CLIPTextModel(**TINY).eval()
    a, b = _ids(), _ids()
    b[:, 10:] = 7
    with torch.no_grad():
        assert torch.allclose(model(a)[:, :10], model(b)[:, :10], atol=1e-6)
        assert not torch.allclose(model(a)[:, 10:], model(b)[:, 10:], atol=1e-3)
