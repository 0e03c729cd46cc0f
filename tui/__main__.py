"""``python -m evalharness.tui``: the console (what ``--serve`` starts for each page)."""

from .app import main

main()
