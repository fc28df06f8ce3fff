"""Right and wrong answers to chapter 14_training_recipes' exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
answer_1 = next(k for k in range(1, 100_000) if k / (9 + k) >= 0.999)
''',
    "exercise 2": '''
def equal_compute_steps(steps, batch, cost_ratio, default_batch=128):
    return round(steps * default_batch / (batch * cost_ratio))
''',
    "exercise 3": '''
import math
from minisd.reader import wilson_interval
def significant(hits_a, hits_b, n):
    (la, ha), (lb, hb) = wilson_interval(hits_a, n), wilson_interval(hits_b, n)
    pa, pb = hits_a / n, hits_b / n
    d = pa - pb
    return d - math.hypot(pa - la, hb - pb) > 0 or d + math.hypot(ha - pa, pb - lb) < 0
''',
}

WRONG = {
    # the update at which the 0.9999 cap applies, as if the warm-up were not there: 1 / (1 - 0.999) = 1000
    "exercise 1": ("answer_1 = next(k for k in range(1, 100_000) if k / (9 + k) >= 0.999)\n", "answer_1 = 1000\n"),
    # forgets the cost per image: equal images, not equal compute
    "exercise 2": ("/ (batch * cost_ratio))", "/ batch)"),
    # calls a difference significant when the two Wilson intervals do not overlap: too strict
    "exercise 3": ("    return d - math.hypot(pa - la, hb - pb) > 0 or d + math.hypot(ha - pa, pb - lb) < 0\n",
                   "    return la > hb or lb > ha\n"),
}
