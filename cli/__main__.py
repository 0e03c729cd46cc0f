"""``python -m evalharness.cli``: the ``evalharness`` command, ended as soon as it is done."""

from .entry import main

main()
