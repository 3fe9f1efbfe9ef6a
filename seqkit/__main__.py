"""``python -m seqkit`` runs the command line (torchrun launches it this way)."""

from seqkit.cli import main

main()
