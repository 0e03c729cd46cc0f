"""``python -m evalharness.cli``: the ``evalharness`` command."""

from .main import main

main()
