"""Right and wrong answers to chapter 12a's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def my_get_timesteps(timesteps, num_inference_steps, strength):
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init_timestep, 0)
    return timesteps[t_start:]
''',
    "exercise 2": '''
def invert_step(z_s, eps, abar_s, abar_t):
    x0 = (z_s - (1 - abar_s) ** 0.5 * eps) / abar_s ** 0.5
    return abar_t ** 0.5 * x0 + (1 - abar_t) ** 0.5 * eps
''',
    "exercise 3": "prediction_3 = 5",
}

WRONG = {
    # keeps the first (noisiest) steps instead of the last ones
    "exercise 1": ("    return timesteps[t_start:]\n", "    return timesteps[:init_timestep]\n"),
    # predicts x_0 with the target's abar_t instead of the abar_s of the point it is at
    "exercise 2": ("    x0 = (z_s - (1 - abar_s) ** 0.5 * eps) / abar_s ** 0.5\n",
                   "    x0 = (z_s - (1 - abar_t) ** 0.5 * eps) / abar_t ** 0.5\n"),
    # rounds 5.5 to the nearest whole number instead of truncating
    "exercise 3": "prediction_3 = 6",
}
