"""``python -m sensord`` runs the command-line interface."""

from sensord.cli import main

main()
