"""Redis between nodes: pub/sub for publications, a registry and routed calls
for the cluster, both over one kind of link (``link.py``)."""
