"""Right and wrong answers to chapter 08b_recipes_edm's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def vp_preconditioning(sigma):
    return 1.0, -sigma, 1 / (sigma**2 + 1) ** 0.5
''',
    "exercise 2": '''
def edm_loss_weight(sigma, sigma_data):
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
''',
    "exercise 3": '''
import math
answer_3 = 0.5 * math.erfc(1 / math.sqrt(2))
''',
}

WRONG = {
    # the sign of c_out: D = x + sigma eps moves away from x_0
    "exercise 1": ("    return 1.0, -sigma, 1 / (sigma**2 + 1) ** 0.5\n", "    return 1.0, sigma, 1 / (sigma**2 + 1) ** 0.5\n"),
    # 1 / c_out instead of 1 / c_out^2
    "exercise 2": ("/ (sigma * sigma_data) ** 2", "/ (sigma * sigma_data)"),
    # P(Z > 1.2): the mean's distance from 0 not divided by the std
    "exercise 3": ("answer_3 = 0.5 * math.erfc(1 / math.sqrt(2))\n", "answer_3 = 0.5 * math.erfc(1.2 / math.sqrt(2))\n"),
}
