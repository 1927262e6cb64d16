"""Protocol-level venues on loopback: Binance (REST and WebSocket), a TWS and a Sierra Chart DTC
server, each speaking its venue's wire format so the producers' real clients run unchanged
against it. `mdp run`'s sandbox mode starts them (``python -m sandbox.<venue>``), and the tests
and benchmarks drive them in-process; the recordings they replay ship with them in
``fixtures/`` as package data, so an installed wheel or the Docker image has them too.

A venue is a role-floor package: it imports the kernel and no other role, with one exception.
``sandbox.dtc`` encodes and decodes with the DTC client's own message table and framing
(``producers.dtc.messages`` and ``producers.dtc.codec``): a second copy of the byte layout
could drift from the client's, whereas one table makes the two agree by construction (the layout
itself is pinned by the unit tests against Sierra Chart's C header).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# Beside the modules, so the path holds in a checkout, an installed wheel and the image alike.
FIXTURES: Final = Path(__file__).resolve().parent / "fixtures"
