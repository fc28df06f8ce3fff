"""minisd.modeling: the one contract every model and scheduler keeps (config, policy, files, loading)."""

import json

import pytest
import torch
from torch import nn

from minisd.diffusion import DDPMScheduler
from minisd.configuration import ConfigMixin, FrozenDict, register_to_config
from minisd.modeling import ModelMixin, randn_tensor
from minisd.sampling import DDIMScheduler, DPMSolverMultistepScheduler
from minisd.unet import UNet2DConditionModel
from minisd.vae import AutoencoderKL


class Tiny(ModelMixin):
    _known_off = {"use_magic": False}

    @register_to_config
    def __init__(self, in_features=3, out_features=2, dropout=0.5):
        super().__init__()
        self.proj = nn.Linear(in_features, out_features)
        self.drop = nn.Dropout(dropout)


def test_config_holds_every_argument_and_is_frozen():
    model = Tiny(in_features=4)
    assert model.config.in_features == 4 and model.config.out_features == 2 and model.config.use_magic is False
    assert Tiny(**model.config).config == model.config
    with pytest.raises(TypeError, match="frozen"):
        model.config["in_features"] = 5
    model.register_to_config(out_features=2)
    with pytest.raises(TypeError, match="no config keys"):
        model.register_to_config(colour="red")


def test_save_returns_the_folder_and_load_is_strict_and_in_eval_mode(tmp_path):
    model = Tiny()
    folder = model.save_pretrained(tmp_path / "tiny")
    assert folder == tmp_path / "tiny"
    saved = json.loads((folder / "config.json").read_text())
    assert saved["_class_name"] == "Tiny" and "_diffusers_version" in saved and "_use_default_values" not in saved
    again = Tiny.from_pretrained(tmp_path, subfolder="tiny")
    assert not again.training and again.config == model.config
    assert Tiny.from_pretrained(folder, dtype=torch.float64).dtype == torch.float64
    torch.testing.assert_close(again.proj.weight, model.proj.weight)
    from safetensors.torch import save_file
    save_file({"proj.weight": torch.zeros(2, 3)}, folder / Tiny.weights_name)  # the bias is missing
    with pytest.raises(ValueError, match=r"missing \['proj.bias'\]"):
        Tiny.from_pretrained(folder)


def test_one_policy_for_unknown_keys(tmp_path):
    folder = Tiny().save_pretrained(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "colour": "red"}))
    with pytest.raises(TypeError, match=r"'colour' in .*config\.json"):
        Tiny.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "use_magic": True}))
    with pytest.raises(NotImplementedError, match="use_magic"):
        Tiny.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "use_magic": False, "_anything": 1}))
    assert Tiny.from_pretrained(folder).config.use_magic is False
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        Tiny.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="config.json"):
        Tiny.from_pretrained(tmp_path / "nowhere")


def test_the_same_policy_holds_for_models_and_schedulers(tmp_path):
    for cls, kwargs in ((AutoencoderKL, dict(block_out_channels=(8,), norm_num_groups=4)),
                        (UNet2DConditionModel, dict(block_out_channels=(4, 8), norm_num_groups=2, cross_attention_dim=8,
                                                    attention_head_dim=2, sample_size=8,
                                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")))):
        assert issubclass(cls, ModelMixin)
        with pytest.raises(TypeError, match="not_a_key"):
            cls.from_config({**kwargs, "not_a_key": 1})
        model = cls.from_config(kwargs)
        assert cls.from_pretrained(model.save_pretrained(tmp_path / cls.__name__)).training is False
    with pytest.raises(TypeError, match="not_a_key"):
        DDPMScheduler.from_config({"not_a_key": 1})
    # a sibling sampler's config lends the keys both take, and keeps its defaults to itself
    ddim = DDIMScheduler.from_config(DDPMScheduler(beta_schedule="scaled_linear", variance_type="fixed_large").config)
    assert ddim.config.beta_schedule == "scaled_linear" and "variance_type" not in ddim.config
    dpm = DPMSolverMultistepScheduler.from_config(DDPMScheduler().config)
    assert dpm.config.timestep_spacing == "linspace"  # the solver's own default, not DDPM's "leading"
    folder = dpm.save_pretrained(tmp_path / "scheduler")
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert public(DPMSolverMultistepScheduler.from_pretrained(folder).config) == public(dpm.config)


def test_the_vae_converts_old_attention_names(tmp_path):
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4)
    old = {k.replace(".to_q.", ".query.").replace(".to_out.0.", ".proj_attn."): v for k, v in vae.state_dict().items()}
    assert any(".query." in k for k in old)
    assert AutoencoderKL.convert_state_dict(old).keys() == vae.state_dict().keys()


def test_randn_tensor_draws_per_sample_and_checks_the_list():
    alone = randn_tensor((1, 3), generator=[torch.Generator().manual_seed(7)])
    batch = randn_tensor((2, 3), generator=[torch.Generator().manual_seed(s) for s in (7, 8)])
    assert torch.equal(alone, batch[:1])
    with pytest.raises(ValueError, match="list of 2"):
        randn_tensor((3, 3), generator=[torch.Generator(), torch.Generator()])


def test_frozen_dict_pickles_and_reads_attributes():
    import pickle
    d = pickle.loads(pickle.dumps(FrozenDict(a=1)))
    assert isinstance(d, FrozenDict) and d.a == 1
    with pytest.raises(AttributeError):
        d.b
    assert issubclass(ModelMixin, ConfigMixin)


def test_a_schedule_written_once_serves_every_sampler():
    sd = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
              clip_sample=False, steps_offset=1)  # clip_sample is DDPM's and DDIM's, not DPM-Solver's
    assert DPMSolverMultistepScheduler.from_config(sd).config.beta_end == 0.012
    with pytest.raises(TypeError, match="clip_smaple"):
        DPMSolverMultistepScheduler.from_config({**sd, "clip_smaple": False})  # a typo is no sampler's key
