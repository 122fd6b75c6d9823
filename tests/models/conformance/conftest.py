"""transformers' own common model tests, applied to hftk's model classes.

`upstream/` holds the vendored test mixins of transformers (Apache-2.0, headers kept); they
are libraries for the testers here, not test modules to collect themselves.
"""

collect_ignore = ["upstream"]

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
