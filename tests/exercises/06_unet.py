"""Right and wrong answers to chapter 06's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def v_target(x0, noise, alpha_bar):
    abar = alpha_bar.view(-1, 1, 1, 1)
    return abar.sqrt() * noise - (1 - abar).sqrt() * x0
''',
    "exercise 2": '''
def x0_from_v(x_t, v, alpha_bar):
    abar = alpha_bar.view(-1, 1, 1, 1)
    return abar.sqrt() * x_t - (1 - abar).sqrt() * v
''',
    "exercise 3": '''
import torch
def x0_error_weight(prediction_type, alpha_bar):
    snr = alpha_bar / (1 - alpha_bar)
    return {"epsilon": snr, "sample": torch.ones_like(alpha_bar), "v_prediction": 1 + snr}[prediction_type]
''',
    "exercise 4": '''
import torch.nn.functional as F
def denoising_loss(model_output, x0, noise, t, scheduler):
    kind = scheduler.config.prediction_type
    target = noise if kind == "epsilon" else x0 if kind == "sample" else scheduler.get_velocity(x0, noise, t)
    return F.mse_loss(model_output, target)
''',
    "exercise 5": "prediction_5 = 12",  # conv_in, 4 blocks x 2 ResNets, 3 downsamplers
}

WRONG = {
    # x_0 and eps swapped in the definition of v
    "exercise 1": (
        '    return abar.sqrt() * noise - (1 - abar).sqrt() * x0\n',
        '    return abar.sqrt() * x0 - (1 - abar).sqrt() * noise\n',
    ),
    # treats v as if it were the noise: x_0 = (x_t - sqrt(1 - abar) v) / sqrt(abar)
    "exercise 2": (
        '    return abar.sqrt() * x_t - (1 - abar).sqrt() * v\n',
        '    return (x_t - (1 - abar).sqrt() * v) / abar.sqrt()\n',
    ),
    # gives v the epsilon weight SNR_t, as if v were just a rescaled noise prediction
    "exercise 3": (
        '    return {"epsilon": snr, "sample": torch.ones_like(alpha_bar), "v_prediction": 1 +'
        ' snr}[prediction_type]\n',
        '    return {"epsilon": snr, "sample": torch.ones_like(alpha_bar), "v_prediction":'
        ' snr}[prediction_type]\n',
    ),
    # always regresses on the noise, whatever the scheduler's prediction_type
    "exercise 4": (
        '    kind = scheduler.config.prediction_type\n'
        '    target = noise if kind == "epsilon" else x0 if kind == "sample" else'
        ' scheduler.get_velocity(x0, noise, t)\n'
        '    return F.mse_loss(model_output, target)\n',
        '    return F.mse_loss(model_output, noise)\n',
    ),
    "exercise 5": "prediction_5 = 11",  # forgets conv_in's output
}
