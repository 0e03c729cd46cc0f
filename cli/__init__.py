"""The ``evalharness`` command line: a module per command group (click is used only here), at the
edge of the engine (``core``) and the daemon (``daemon``), which never import it."""
