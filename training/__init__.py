"""Training and data preparation for the codec engine's networks (not shipped in the wheel)."""
