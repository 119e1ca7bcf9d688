"""The PostgreSQL store: many nodes on one database, seqs assigned in the commit.

``store`` is the ``Store`` (the write path); ``inbox`` its reads and inbox
changes; ``topics`` and ``schema`` the SQL; ``faults`` maps what the driver
raises when the server is gone.
"""
