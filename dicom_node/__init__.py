"""DICOM side of the appliance: listener, durable spool, series completion, sender.

Lowest layer of wbspine: depends on pydicom, pynetdicom and the standard library only.
"""

from dicom_node.errors import WbspineError

__all__ = ["WbspineError"]
