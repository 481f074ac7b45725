"""Root pytest configuration: tag notebook items so `-m notebook` selects them."""
import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebook)
