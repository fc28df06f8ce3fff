"""Right and wrong answers to chapter 08b_recipes' exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def my_v_weight(snr, gamma):
    return snr.clamp(max=gamma) / (snr + 1)
''',
    "exercise 2": '''
import torch
from minisd.diffusion import DDPMScheduler
from minisd.recipes import compute_snr
from minisd.unet import SD_NOISE_SCHEDULE
answer_2 = int((compute_snr(DDPMScheduler(**SD_NOISE_SCHEDULE).alphas_cumprod, torch.arange(1000)) <= 5.0).sum())
''',
    "exercise 3": '''
import torch
def my_offset_noise(noise, scale, generator):
    offset = torch.randn((noise.shape[0], noise.shape[1], 1, 1), generator=generator)
    return noise + scale * offset
''',
}

WRONG = {
    # diffusers' first weight for every target: the eps weight min(SNR, gamma) / SNR, dividing by SNR, not SNR + 1
    "exercise 1": ("    return snr.clamp(max=gamma) / (snr + 1)\n", "    return snr.clamp(max=gamma) / snr\n"),
    # counts the timesteps where the weight is below 1 (SNR > gamma): the complement
    "exercise 2": ("<= 5.0).sum())", "> 5.0).sum())"),
    # one offset per sample, shared by all channels: shifts the brightness, not each channel's level
    "exercise 3": ("(noise.shape[0], noise.shape[1], 1, 1)", "(noise.shape[0], 1, 1, 1)"),
}
