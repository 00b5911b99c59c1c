"""Keel: render Python services that start in the right order."""
