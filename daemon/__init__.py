"""The long-running side of evalharness: worker processes, the daemon and the command line."""
