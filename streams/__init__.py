"""Kafka topics, events and the Kafka source: where media enter and leave.

Installed as ``mimamori.streams`` (setup.py's package_dir). Imported under its bare folder name
(``import streams`` from the repository root) it would be a second copy with its own module
state (metrics, clients, coders): refused.
"""

if __name__ != "mimamori.streams":
    raise ImportError("import mimamori.streams, not streams: the folder is installed as mimamori.streams")
