"""Which client a request came from when it came through proxies.

Behind a load balancer every connection's TCP peer is the balancer; the
client is in ``X-Forwarded-For``. That header is believed only when it comes
from a trusted proxy (``--forwarded-allow-ips``, as uvicorn's own option for
the HTTP API, which gets the same list): the client is then the right-most
address in it that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress

from tidings.core.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, spec: tuple[str, ...]) -> None:
        self.everyone = "*" in spec
        self.networks: list[Network] = []
        for item in spec:
            if item == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(
                    f"--forwarded-allow-ips: {item!r} is not an IP address or network"
                ) from None

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: ``peer``, or what a trusted peer forwarded."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer
