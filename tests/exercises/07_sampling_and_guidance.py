"""Right and wrong answers to chapter 07's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def ddim_step(x_t, eps, abar_t, abar_s):
    x0 = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t ** 0.5
    return abar_s ** 0.5 * x0 + (1 - abar_s) ** 0.5 * eps
''',
    "exercise 2": '''
def guide(eps_uncond, eps_text, w):
    return eps_uncond + w * (eps_text - eps_uncond)
''',
    "exercise 3": '''
import numpy as np
def my_karras_sigmas(sigma_min, sigma_max, n, rho=7.0):
    ramp = np.linspace(0, 1, n)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
''',
    "exercise 4": "prediction_4 = 38",  # Heun: 19 model calls for 10 steps, each on 2 images (uncond + text)
}

WRONG = {
    # the stochastic DDPM mean instead of DDIM's deterministic step: reuses eps but with abar_t's noise level
    "exercise 1": (
        '    return abar_s ** 0.5 * x0 + (1 - abar_s) ** 0.5 * eps\n',
        '    return abar_s ** 0.5 * x0 + (1 - abar_t) ** 0.5 * eps\n',
    ),
    # the "w times the text prediction" misreading
    "exercise 2": '''
def guide(eps_uncond, eps_text, w):
    return w * eps_text
''',
    # interpolating sigma itself, not sigma^(1/rho)
    "exercise 3": (
        '    ramp = np.linspace(0, 1, n)\n'
        '    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 /'
        ' rho))) ** rho\n',
        '    return np.linspace(sigma_max, sigma_min, n)\n',
    ),
    "exercise 4": "prediction_4 = 20",  # forgets that Heun calls the model twice per step
}
