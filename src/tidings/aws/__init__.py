"""tidings as a self-hosted AWS API Gateway WebSocket API.

What a backend written for API Gateway needs, so it moves with a new URL:

- ``routes``: the route table (``$connect``, ``$disconnect``, ``$default``,
  custom keys -> HTTP URLs) and the route selection expression. Pure.
- ``events``: the Lambda-proxy-shaped events tidings POSTs to a route's URL,
  and the parsing of the integration's ``{statusCode, body}``. Pure.
- ``integration``: the one shared HTTP client that carries them.
- ``gateway``: the glue between the WebSocket transport and the routes
  (deferred ``$connect``, message routing, ``$disconnect`` with retries).
- ``sigv4``: AWS Signature Version 4 verification for the ``@connections``
  management API. Pure.
- ``web``: the management API's authentication (SigV4 or an admin token), the
  AWS error shape, and the ``/{stage}/@connections`` prefix.
- ``settings`` and ``options``: the settings dataclass and its command-line flags.

Arrows point inward: ``web`` and ``gateway`` use the pure modules; the pure
modules import nothing from ``tidings.web``.
"""
