"""The Textual console of evalharness."""
