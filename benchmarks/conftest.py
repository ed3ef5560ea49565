import pytest


@pytest.fixture(scope="session")
def rack():
    from serumrnn.core import get_plugin_manager

    return get_plugin_manager().rack("builtin")
