"""alumon: real-time energy and emissions monitor for aluminium plants."""

__version__ = "0.1.0"
