"""The load generator: picows clients that measure a tidings deployment.

``tidings bench`` runs it against any deployment with one user's token
(``deployment``); the benchmark harness in ``bench/`` builds its workloads on
the same modules, so a user's figures and the published ones come from one
client. Needs picows (the ``bench`` extra); this package imports
nothing until one of its modules is asked for.
"""
