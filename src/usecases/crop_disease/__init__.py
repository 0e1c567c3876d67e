"""Crop disease detection from leaf photos."""
