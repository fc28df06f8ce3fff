"""Right and wrong answers to chapter 05's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def q_sample(x0, noise, t, alphas_cumprod):
    abar = alphas_cumprod[t].reshape(-1, *[1] * (x0.ndim - 1))
    return abar ** 0.5 * x0 + (1 - abar) ** 0.5 * noise
''',
    "exercise 2": '''
def posterior_mean_coefficients(abar_t, abar_prev):
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    return abar_prev ** 0.5 * beta_t / (1 - abar_t), alpha_t ** 0.5 * (1 - abar_prev) / (1 - abar_t)
''',
    "exercise 3": '''
def tweedie_x0(x_t, score, abar):
    return (x_t + (1 - abar) * score) / abar ** 0.5
''',
    "exercise 4": "prediction_4 = (100, 65)",  # SD: z = 0.068 / 0.018 = 3.8; linear: z = 0.0064 / 0.018 = 0.35
}

WRONG = {
    # the variances as coefficients: abar x_0 + (1 - abar) eps, the forgotten square roots
    "exercise 1": (
        '    return abar ** 0.5 * x0 + (1 - abar) ** 0.5 * noise\n',
        '    return abar * x0 + (1 - abar) * noise\n',
    ),
    # sqrt(abar_t) where the x_0 coefficient needs sqrt(abar_prev)
    "exercise 2": (
        '    return abar_prev ** 0.5 * beta_t / (1 - abar_t), alpha_t ** 0.5 * (1 - abar_prev) /'
        ' (1 - abar_t)\n',
        '    return abar_t ** 0.5 * beta_t / (1 - abar_t), alpha_t ** 0.5 * (1 - abar_prev) / (1'
        ' - abar_t)\n',
    ),
    # forgets to divide by sqrt(abar): the estimate of E[sqrt(abar) x_0 | x_t], not of E[x_0 | x_t]
    "exercise 3": '''
def tweedie_x0(x_t, score, abar):
    return x_t + (1 - abar) * score
''',
    # "at t = 999 the noise wins": forgets that a mean over 3072 pixels averages the noise down
    "exercise 4": "prediction_4 = (50, 50)",
}
