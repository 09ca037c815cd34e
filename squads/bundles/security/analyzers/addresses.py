"""IP addresses in the security squad's outputs."""

from __future__ import annotations

import ipaddress


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or None when it is not one (a host name, a truncated field)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
