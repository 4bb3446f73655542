"""``python -m sensord`` and the ``sensord`` console script run the command-line interface.

The CLI is imported only when :func:`main` runs: the daemon's scoring worker, started with
``spawn``, re-imports the main module of ``sensord run`` (the console script, which imports
this module), and must not load the CLI and everything it imports (some 8 MB resident).
"""


def main() -> None:
    """Console-script entry point."""
    from sensord.cli import main as cli_main

    cli_main()


if __name__ == "__main__":  # not when a spawned worker process re-imports the main module
    main()
