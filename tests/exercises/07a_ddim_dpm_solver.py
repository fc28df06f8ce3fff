"""Right and wrong answers to chapter 07a's exercise (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def ddim_step(x_t, eps, abar_t, abar_s):
    x0 = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t ** 0.5
    return abar_s ** 0.5 * x0 + (1 - abar_s) ** 0.5 * eps
''',
}

WRONG = {
    # the stochastic DDPM mean instead of DDIM's deterministic step: reuses eps but with abar_t's noise level
    "exercise 1": (
        '    return abar_s ** 0.5 * x0 + (1 - abar_s) ** 0.5 * eps\n',
        '    return abar_s ** 0.5 * x0 + (1 - abar_t) ** 0.5 * eps\n',
    ),
}
