"""Right and wrong answers to chapter 08a's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import torch
from minisd.guidance import classifier_free_guidance

@torch.no_grad()
def img2img(pipe, prompt, image, strength, num_inference_steps=10, guidance_scale=7.5, generator=None):
    vae, unet, scheduler = pipe.vae, pipe.unet, pipe.scheduler
    z = vae.encode(image * 2 - 1).mode() * vae.config.scaling_factor
    scheduler.set_timesteps(num_inference_steps)
    n = min(int(num_inference_steps * strength), num_inference_steps)
    timesteps = scheduler.timesteps[num_inference_steps - n:]  # the last n steps, the least noisy
    if n:
        z = scheduler.add_noise(z, torch.randn(z.shape, generator=generator), timesteps[:1])
    text = torch.cat([pipe.encode_prompt([""]), pipe.encode_prompt([prompt])])
    for t in timesteps:
        eps_uncond, eps_text = unet(torch.cat([z, z]), t, text).chunk(2)
        z = scheduler.step(classifier_free_guidance(eps_uncond, eps_text, guidance_scale), t, z)
    return ((vae.decode(z / vae.config.scaling_factor) + 1) / 2).clamp(0, 1)
''',
    "exercise 2": "prediction_2 = (24, 12)",
    "exercise 3": '''
from minisd.pipeline import get_scheduler

def with_scheduler(pipe, name):
    return type(pipe)(**{**pipe.components, "scheduler": get_scheduler(name, pipe.scheduler.config)})
''',
}

WRONG = {
    # noises to the right level but then runs the FIRST n timesteps (the noisiest ones) instead of the last n
    "exercise 1": (
        '    timesteps = scheduler.timesteps[num_inference_steps - n:]  # the last n steps, the'
        ' least noisy\n',
        '    timesteps = scheduler.timesteps[:n]\n',
    ),
    # forgets that guidance (and its unconditional half of the batch) is skipped at w = 1
    "exercise 2": "prediction_2 = (24, 24)",
    # swaps the scheduler of the pipeline it was given: the caller's pipeline changes under it
    "exercise 3": (
        '    return type(pipe)(**{**pipe.components, "scheduler": get_scheduler(name,'
        ' pipe.scheduler.config)})\n',
        '    pipe.scheduler = get_scheduler(name, pipe.scheduler.config)\n'
        '    return pipe\n',
    ),
}
