"""A simulated `hccn_tool` for a node's NPU network ports, answering like the real one
(tests/fixtures/hccn-tool). NPU i of node 127.0.0.X has address 29.0.X.i.

Faults by chip id: CPCONSOLE_SIM_LINK_DOWN="2,3", CPCONSOLE_SIM_NET_FAULT="4",
CPCONSOLE_SIM_NO_IP="5", CPCONSOLE_SIM_PING_LOSS="6" (pings from chip 6 get no answer),
CPCONSOLE_SIM_TLS_ON="7" (TLS switched on for chip 7; off elsewhere, as recommended).

`hccn.conf` prints the node's /etc/hccn.conf in the driver's layout (every chip's address, netmask
255.255.0.0, gateway and detect IP 29.0.0.1). Faults: CPCONSOLE_SIM_NO_GATEWAY="3" (no gateway_3),
CPCONSOLE_SIM_GATEWAY_OFFNET="4" (gateway_4 outside the chip's subnet), CPCONSOLE_SIM_NO_NETDETECT="5",
CPCONSOLE_SIM_CONF_ADDRESS="6" (address_6 differs from the address the chip runs with)."""

from __future__ import annotations

import os
import sys

from . import nodestate


def _ids(name: str) -> set[int]:
    return {int(x) for x in os.environ.get(name, "").split(",") if x.strip().isdigit()}


def npu_ip(node: str, chip: int) -> str:
    last = node.rsplit(".", 1)[-1]
    return f"29.0.{int(last) % 256 if last.isdigit() else 1}.{chip}"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "-i" or not argv[1].isdigit():
        print("Usage: hccn_tool -i <device_id> -<command> -g [...]", file=sys.stderr)
        return 1
    chip, command, rest = int(argv[1]), argv[2], argv[3:]
    chips = int(os.environ.get("CPCONSOLE_SIM_CHIPS", "16") or 16)
    if chip >= chips:
        print(f"device id {chip} is invalid", file=sys.stderr)
        return 1
    node = nodestate.node_name()
    down = chip in _ids("CPCONSOLE_SIM_LINK_DOWN")
    if command == "-link":
        print(f"link status: {'DOWN' if down else 'UP'}")
    elif command == "-net_health":
        print(f"net health status: {'Fault' if down or chip in _ids('CPCONSOLE_SIM_NET_FAULT') else 'Success'}")
    elif command == "-ip":
        if chip in _ids("CPCONSOLE_SIM_NO_IP"):
            print("Get ipconf failed, because no ip was preset there!")
            return 1
        print(f"ipaddr:{npu_ip(node, chip)}\nnetmask:255.255.0.0")
    elif command == "-tls":  # the HDK's layout (CANN's hccn_tool guide), certificates left out
        switch = 1 if chip in _ids("CPCONSOLE_SIM_TLS_ON") else 0
        print(
            f"dev_id:{chip}, tls switch[{switch}](0:disable, 1:enable), tls preconfigured[1](0:non-preset, "
            "1:preset), tls alarm time threshold[60]days"
        )
    elif command == "-ping" and len(rest) >= 3 and rest[:2] == ["-g", "address"]:
        target = rest[2]
        print(f"device {chip} PING {target}")
        reachable = not down and chip not in _ids("CPCONSOLE_SIM_PING_LOSS") and target.startswith("29.0.")
        if reachable:
            for seq in range(3):
                print(f"recv seq={seq},time={0.034 + 0.006 * seq:.6f}ms")
        print(f"3 packets transmitted, {3 if reachable else 0} received, {0 if reachable else 100:.2f}% packet loss")
    else:
        print(f"Unsupported command: {command}", file=sys.stderr)
        return 1
    return 0


def conf_main(argv: list[str]) -> int:
    """The node's /etc/hccn.conf: chips without an address (CPCONSOLE_SIM_NO_IP) have no lines."""
    chips = int(os.environ.get("CPCONSOLE_SIM_CHIPS", "16") or 16)
    node = nodestate.node_name()
    lines = []
    for chip in sorted(set(range(chips)) - _ids("CPCONSOLE_SIM_NO_IP")):
        address = npu_ip(node, chip)
        if chip in _ids("CPCONSOLE_SIM_CONF_ADDRESS"):
            address = f"29.0.250.{chip}"
        lines += [f"address_{chip}={address}", f"netmask_{chip}=255.255.0.0"]
        if chip not in _ids("CPCONSOLE_SIM_NO_NETDETECT"):
            lines.append(f"netdetect_{chip}=29.0.0.1")
        if chip not in _ids("CPCONSOLE_SIM_NO_GATEWAY"):
            lines.append(f"gateway_{chip}={'29.9.0.1' if chip in _ids('CPCONSOLE_SIM_GATEWAY_OFFNET') else '29.0.0.1'}")
        lines += [f"send_arp_status_{chip}=1", f"tls_enable_{chip}={int(chip in _ids('CPCONSOLE_SIM_TLS_ON'))}"]
    print("\n".join(lines))
    return 0
