"""minisd: a miniature Stable Diffusion, built from scratch one notebook chapter at a time.

Hand-written (not exported from a notebook): the public names, gathered from the modules that
the notebooks in chapters/ export. Each module names the notebook that wrote it at its top.
"""

__version__ = "0.1.0"

from minisd.core import PROFILES, Profile, cache_dir, get_device, get_profile, image_grid, seed_everything
from minisd.data import (
    ATTRIBUTES,
    COLOURS,
    HELDOUT_PAIRS,
    POSITIONS,
    SHAPES,
    SIZES,
    attribute_ids,
    caption_from_attributes,
    images_to_tensor,
    load_captioned_shapes,
    parse_caption,
    render,
)
from minisd.own_data import load_captioned
from minisd.reader import adherence, format_rate, read_attributes, wilson_interval
# the components, under Stable Diffusion's own names (diffusers / transformers)
from minisd.attention import Attention
from minisd.cvae import ConditionalVAE
from minisd.diffusion import DDPMScheduler
from minisd.pipeline import StableDiffusionPipeline
from minisd.sampling import DDIMScheduler, DPMSolverMultistepScheduler
from minisd.edm import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler
from minisd.guidance import classifier_free_guidance, rescale_noise_cfg
from minisd.clip import MiniCLIP, train_mini_clip
from minisd.text_encoder import CLIPTextConfig, CLIPTextModel
from minisd.tokenizer import CLIPTokenizer
from minisd.unet import UNet2DConditionModel, pretrained_text_unet
from minisd.vae import AutoencoderKL, DiagonalGaussianDistribution
from minisd.vae_training import pretrained_vae
# EDM's preconditioning and its sampler (chapter 08b_recipes_edm); the import registers the sampler by name
from minisd.edm_recipe import EDMEulerScheduler, edm_preconditioning
# several objects per image, captioned in GenEval's task forms (chapter 10a)
from minisd.scenes import load_scenes, make_scenes, relative_position, render_scenes
# their exact GenEval-style reader, and the benchmark (chapter 10b)
from minisd.scene_benchmark import read_scene, score
# flow matching: SD3's and FLUX's scheduler (chapter 11a)
from minisd.flow import (
    FlowMatchEulerDiscreteScheduler,
    calculate_shift,
    compute_density_for_timestep_sampling,
)
# MMDiT: Stable Diffusion 3's transformer (chapter 11b)
from minisd.mmdit import SD3Transformer2DModel
