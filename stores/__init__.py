"""The stores: Milvus collections, MinIO objects and the case database.

Installed as ``mimamori.stores`` (setup.py's package_dir). Imported under its bare folder name
(``import stores`` from the repository root) it would be a second copy with its own module
state (metrics, clients, coders): refused.
"""

if __name__ != "mimamori.stores":
    raise ImportError("import mimamori.stores, not stores: the folder is installed as mimamori.stores")
