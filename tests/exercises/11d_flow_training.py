"""Right and wrong answers to chapter 11d's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
def flow_pair(x0, eps, t):
    t = t.reshape(-1, 1, 1, 1)
    return (1 - t) * x0 + t * eps, eps - x0
''',
    "exercise 2": '''
def x0_and_eps(x_t, v, t):
    t = t.reshape(-1, 1, 1, 1)
    x0 = x_t - t * v
    return x0, x0 + v
''',
    "exercise 3": "prediction_3 = (64, 16, 64 + 77)",
}

WRONG = {
    # the target written as x_0 - eps: the velocity pointing from noise to data, the wrong sign for t rising
    "exercise 1": '''
def flow_pair(x0, eps, t):
    t = t.reshape(-1, 1, 1, 1)
    return (1 - t) * x0 + t * eps, x0 - eps
''',
    # x_0 = x_t - (1 - t) v: the step to t = 0 taken over the wrong length of time
    "exercise 2": '''
def x0_and_eps(x_t, v, t):
    t = t.reshape(-1, 1, 1, 1)
    x0 = x_t - (1 - t) * v
    return x0, x0 + v
''',
    # counting image tokens only, as if the text had its own attention
    "exercise 3": "prediction_3 = (64, 16, 64)",
}
