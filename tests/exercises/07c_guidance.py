"""Right and wrong answers to chapter 07c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '\ndef guide(eps_uncond, eps_text, w):\n    return eps_uncond + w * (eps_text - eps_uncond)\n',
    "exercise 2": 'prediction_2 = 38',  # Heun: 19 model calls for 10 steps, each on 2 images (uncond + text)
}

WRONG = {
    # the "w times the text prediction" misreading
    "exercise 1": '\ndef guide(eps_uncond, eps_text, w):\n    return w * eps_text\n',
    "exercise 2": 'prediction_2 = 20',  # forgets that Heun calls the model twice per step
}
