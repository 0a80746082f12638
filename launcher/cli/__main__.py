"""``python -m launcher.cli``: the ``pricewatch`` command without its console script."""

from launcher.cli import main

main()
