"""Right and wrong answers to chapter 00c's exercises (see tests/test_exercises.py)."""

SOLUTIONS = {
    "exercise 1": '''
from minisd.configuration import ConfigMixin, check_choice, register_to_config
class Blur(ConfigMixin):
    @register_to_config
    def __init__(self, kernel_size=3, sigma=1.0):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd; got {kernel_size}")
''',
    "exercise 2": '''
def with_changes(obj, **updates):
    return type(obj).from_config(obj.config, **updates)
''',
    "exercise 3": "prediction_3 = [TypeError, NotImplementedError, None, TypeError, ValueError]",
}

WRONG = {
    # keeps the arguments as attributes but never records a config: no `.config`, no type checks
    "exercise 1": '''
from minisd.configuration import ConfigMixin
class Blur(ConfigMixin):
    def __init__(self, kernel_size=3, sigma=1.0):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd; got {kernel_size}")
        self.kernel_size, self.sigma = kernel_size, sigma
''',
    # edits a copy's config in place: the config says width 6, the object was built for 4
    "exercise 2": '''
import copy
def with_changes(obj, **updates):
    new = copy.deepcopy(obj)
    new.register_to_config(**updates)
    return new
''',
    # diffusers' habit of warning about an unknown key and ignoring it
    "exercise 3": "prediction_3 = [None, NotImplementedError, None, TypeError, ValueError]",
}
