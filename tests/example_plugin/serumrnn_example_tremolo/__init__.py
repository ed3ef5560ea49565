"""Example third-party plugin for serumrnn (used by the test suite and docs/plugins.md)."""
