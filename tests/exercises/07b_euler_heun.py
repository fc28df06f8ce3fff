"""Right and wrong answers to chapter 07b's exercise (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import numpy as np
def my_karras_sigmas(sigma_min, sigma_max, n, rho=7.0):
    ramp = np.linspace(0, 1, n)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
''',
}

WRONG = {
    # interpolating sigma itself, not sigma^(1/rho)
    "exercise 1": (
        '    ramp = np.linspace(0, 1, n)\n'
        '    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 /'
        ' rho))) ** rho\n',
        '    return np.linspace(sigma_max, sigma_min, n)\n',
    ),
}
