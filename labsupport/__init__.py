"""labsupport: the models, views and kernel twins behind Kubernetes Networking 101.

Importing the package is cheap and changes nothing global: heavy libraries
(scapy, matplotlib, ipywidgets) are imported by the modules that need them,
when they need them.
"""

from labsupport.errors import LabInputError

__all__ = ["LabInputError"]
__version__ = "0.1.0"
