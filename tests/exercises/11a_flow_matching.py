"""Right and wrong answers to chapter 11a's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def euler_step(x, u, t, t_next):
    return x + (t_next - t) * u
''',
    "exercise 2": '''
def shift_time(t, s):
    return s * t / (1 + (s - 1) * t)
''',
    "exercise 3": '''
def flow_training_pair(x0, eps, t):
    t = t.view(-1, *[1] * (x0.ndim - 1))
    return (1 - t) * x0 + t * eps, eps - x0
''',
    "exercise 4": "prediction_4 = 3",  # sigmas 1.0, 0.858, 0.602, 0.009 (then 0): three above 0.5
}

WRONG = {
    # the sign of the step reversed: moves towards noise instead of data
    "exercise 1": '''
def euler_step(x, u, t, t_next):
    return x + (t - t_next) * u
''',
    # the inverse map (t' = t / (s - (s - 1) t)): shifts towards the data instead of the noise
    "exercise 2": '''
def shift_time(t, s):
    return t / (s - (s - 1) * t)
''',
    # the velocity pointing from noise to data (x0 - eps): the sign of the target flipped
    "exercise 3": '''
def flow_training_pair(x0, eps, t):
    t = t.view(-1, *[1] * (x0.ndim - 1))
    return (1 - t) * x0 + t * eps, x0 - eps
''',
    # counts the steps of the unshifted grid (1.0, 0.668, 0.335, 0.003)
    "exercise 4": "prediction_4 = 2",
}
