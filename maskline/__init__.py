"""maskline: a self-hostable number-masking voice API for India."""

__version__ = "0.1.0"
