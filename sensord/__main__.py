"""``python -m sensord`` runs the command-line interface."""

from sensord.cli import main

if __name__ == "__main__":  # not when a spawned worker process re-imports the main module
    main()
