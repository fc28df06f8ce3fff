"""Right and wrong answers to chapter 02c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
import math
def psnr_from_mse(mse, max_value=1.0):
    return 10 * math.log10(max_value**2 / mse)
''',
    "exercise 2": '''
def scaling_factor_of(latents):
    return 1.0 / latents.std().item()
''',
    "exercise 3": '''
import math
def black_psnr(fraction, colour):
    mse = fraction * sum(c * c for c in colour) / len(colour)
    return 10 * math.log10(1 / mse)
''',
}

WRONG = {
    # 20 log10 applied to the MSE: the amplitude rule used on a power
    "exercise 1": (
        '    return 10 * math.log10(max_value**2 / mse)\n',
        '    return 20 * math.log10(max_value / mse)\n',
    ),
    # one over the variance instead of the standard deviation
    "exercise 2": '''
def scaling_factor_of(latents):
    return 1.0 / latents.var().item()
''',
    # the error of the shape's pixels only: forgets that the black pixels are already right
    "exercise 3": (
        '    mse = fraction * sum(c * c for c in colour) / len(colour)\n',
        '    mse = sum(c * c for c in colour) / len(colour)\n',
    ),
}
