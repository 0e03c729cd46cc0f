"""Bundled example dataset and simulated system under test."""
