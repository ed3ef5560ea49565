"""The ``serumrnn`` command-line tool (typer + rich)."""
