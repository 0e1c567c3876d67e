"""Forged civil-status document detection (birth certificates from Benin and Niger)."""
