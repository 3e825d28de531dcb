"""Beam transforms: thin DoFns over the functions of the layers below.

Installed as ``mimamori.transforms`` (setup.py's package_dir). Imported under its bare folder name
(``import transforms`` from the repository root) it would be a second copy with its own module
state (metrics, clients, coders): refused.
"""

if __name__ != "mimamori.transforms":
    raise ImportError("import mimamori.transforms, not transforms: the folder is installed as mimamori.transforms")
