"""transformers' own common model tests, applied to hftk's model classes.

`upstream/` holds the vendored test mixins of transformers (Apache-2.0, headers kept); they
are libraries for the testers here, not test modules to collect themselves.
"""

import transformers.testing_utils

collect_ignore = ["upstream"]


def _slow_as_mark(test):
    """transformers' `@slow` skips unless RUN_SLOW; here it only marks, and the testers pick which to run."""
    test.transformers_slow = True
    return test


# Before the vendored modules import `slow` (they are imported by the test modules, after this file).
transformers.testing_utils.slow = _slow_as_mark

UPSTREAM_MARKS = (
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
    "torch_export_test",
    "generate",
    "training_ci",
    "onnx_export_test",
    "executorch_export_test",
    "accelerate_tests",
)


def pytest_configure(config):
    for mark in UPSTREAM_MARKS:
        config.addinivalue_line("markers", f"{mark}: a mark of transformers' test suite")
