"""Face models: detection, alignment and embedding, with plain arguments (no application config).

Installed as ``mimamori.models`` (setup.py's package_dir). Imported under its bare folder name
(``import models`` from the repository root) it would be a second copy with its own module
state (metrics, clients, coders): refused.
"""

if __name__ != "mimamori.models":
    raise ImportError("import mimamori.models, not models: the folder is installed as mimamori.models")
