"""memlab: measure when a model memorizes and what that costs it on new or perturbed data."""

__version__ = "0.1.0"
