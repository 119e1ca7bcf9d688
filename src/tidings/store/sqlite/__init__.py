"""The SQLite store (the default): one file, one writer thread, WAL readers.

``store`` is the ``Store``; ``inbox`` and ``topics`` are functions of a
connection per domain; ``schema`` the migrations; ``rows`` and ``tx`` what
they share.
"""
