"""signerd: the signing core of a state custody platform for digital assets."""

__version__ = "0.1.0"
