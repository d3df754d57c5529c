"""The wbspine edge appliance: volumes, inference, measurements, outputs, CLI.

Never imports torch (the edge install has none); a test enforces it.
"""

__version__ = "0.1.0"
