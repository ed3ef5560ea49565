"""Built-in pluggy hookimpl modules (listed in ``serumrnn.core.registry.DEFAULT_PLUGINS``)."""
