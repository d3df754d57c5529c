"""Inference engines behind one small protocol (:class:`appliance.engines.base.Engine`).

Nothing here is imported eagerly: each backend imports its runtime (onnxruntime,
tensorrt, tritonclient) only when it is built, so the appliance stays importable on a
box that lacks the optional ones.
"""
