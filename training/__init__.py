"""Training of the residual 3D U-Net (JoVE 67781). Needs the ``train`` extra (torch).

Importing this package does not import torch; modules that need it call
:func:`training.torch_import.require_torch`.
"""
