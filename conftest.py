"""Root pytest configuration: tag notebook items so `-m notebook` selects them."""
import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebook)


# CI runs the property tests with a fixed seed sequence, so a green run can be
# reproduced exactly; locally every run explores new examples.
import os  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
