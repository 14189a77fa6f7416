"""Ascend rank tables (HCCL json: version 1.0 as written by MindSpore's ``hccl_tools.py``, and 1.2).

A rank table tells HCCL which devices take part in a job: one entry per server (``server_id``, its
host IP) listing its devices (``device_id`` on the server, ``device_ip`` of the device's own NIC
from ``/etc/hccn.conf``, and the global ``rank_id``). Every value is a string::

    {"version": "1.0", "server_count": "1", "status": "completed",
     "server_list": [{"server_id": "10.0.0.1", "host_nic_ip": "reserve",
                      "device": [{"device_id": "0", "device_ip": "192.168.100.101", "rank_id": "0"}, ...]}]}

Version 1.2 (Atlas A3 super pods) adds each device's ``super_device_id`` (unique in its super pod)
and a ``super_pod_list`` assigning every server to one super pod:
``{"super_pod_id": "0", "server_list": [{"server_id": "10.0.0.1"}, ...]}``.

``device_id`` is the physical device number; a process sees the devices in
``ASCEND_RT_VISIBLE_DEVICES`` renumbered from 0, so its ``DEVICE_ID`` is the logical number
(:func:`logical_device_id`).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ms_suite.errors import UserError

VERSIONS = ("1.0", "1.2")
SUPER_POD_VERSION = "1.2"


@dataclasses.dataclass(frozen=True)
class Device:
    server_index: int
    server_id: str
    device_id: int
    device_ip: str
    rank_id: int
    super_device_id: Optional[int] = None  # version 1.2 only


@dataclasses.dataclass(frozen=True)
class RankTable:
    """A checked rank table: devices in file order."""

    path: str
    devices: List[Device]

    @property
    def server_count(self) -> int:
        return len({d.server_index for d in self.devices})

    @property
    def rank_size(self) -> int:
        return len(self.devices)

    def server_devices(self, server_index: int) -> List[Device]:
        return [d for d in self.devices if d.server_index == server_index]


class RankTableError(UserError):
    """A rank table with problems; ``problems`` holds one line per problem, each naming its field."""

    def __init__(self, path: str, problems: List[str]):
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s) in the rank table; first: {problems[0]}")


def load_rank_table(path: str) -> RankTable:
    """Read and check ``path``; raises :class:`RankTableError` listing every problem."""
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except OSError as err:
        raise UserError(f"rank table {path}: {err.strerror}; pass an existing hccl json file") from None
    except json.JSONDecodeError as err:
        raise RankTableError(path, [f"not valid JSON: {err}"]) from None
    problems: List[str] = []
    devices = _check(raw, problems)
    if problems:
        raise RankTableError(path, problems)
    return RankTable(path, devices)


def _int_field(value: Any, field: str, problems: List[str]) -> Optional[int]:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    problems.append(f"{field}: {value!r} is not a non-negative integer string (e.g. \"0\")")
    return None


def _ip_field(value: Any, field: str, problems: List[str]) -> Optional[str]:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        problems.append(f"{field}: {value!r} is not an IPv4 address")
        return None


def _check(raw: Any, problems: List[str]) -> List[Device]:
    """Schema, counts, unique server/device IPs and rank ids 0..N-1; appends one line per problem."""
    if not isinstance(raw, dict):
        problems.append("top level: expected a JSON object with version, server_count, server_list, status")
        return []
    missing = [k for k in ("version", "server_count", "server_list", "status") if k not in raw]
    problems.extend(f"{k}: missing" for k in missing)
    if "version" in raw and raw["version"] not in VERSIONS:
        problems.append(f"version: {raw['version']!r} is not supported; expected {' or '.join(VERSIONS)} "
                        "(1.0: the hccl_tools.py format; 1.2: with super pods)")
    if "status" in raw and raw["status"] != "completed":
        problems.append(f"status: {raw['status']!r}; a finished table says \"completed\"")
    servers = raw.get("server_list")
    if "server_list" in raw and (not isinstance(servers, list) or not servers):
        problems.append("server_list: expected a non-empty list of servers")
        servers = []
    servers = servers or []
    if "server_count" in raw:
        count = _int_field(raw["server_count"], "server_count", problems)
        if count is not None and count != len(servers):
            problems.append(f"server_count: says {count} but server_list has {len(servers)} server(s)")
    devices: List[Device] = []
    seen_servers: Dict[str, int] = {}
    super_pods = raw.get("version") == SUPER_POD_VERSION
    for index, server in enumerate(servers):
        devices += _check_server(index, server, seen_servers, problems, super_pods)
    _check_devices(devices, servers, problems)
    if super_pods:
        _check_super_pods(raw.get("super_pod_list"), devices, seen_servers, problems)
    return devices


def _check_server(index: int, server: Any, seen: Dict[str, int], problems: List[str],
                  super_pods: bool = False) -> List[Device]:
    where = f"server_list[{index}]"
    if not isinstance(server, dict):
        problems.append(f"{where}: expected an object with server_id and device")
        return []
    server_id = _ip_field(server.get("server_id"), f"{where}.server_id", problems)
    if server_id is not None:
        if server_id in seen:
            problems.append(f"{where}.server_id: {server_id} is also server_list[{seen[server_id]}]")
        seen.setdefault(server_id, index)
    entries = server.get("device")
    if not isinstance(entries, list) or not entries:
        problems.append(f"{where}.device: expected a non-empty list of devices")
        return []
    devices = []
    for k, entry in enumerate(entries):
        field = f"{where}.device[{k}]"
        if not isinstance(entry, dict):
            problems.append(f"{field}: expected an object with device_id, device_ip, rank_id")
            continue
        values = (_int_field(entry.get("device_id"), f"{field}.device_id", problems),
                  _ip_field(entry.get("device_ip"), f"{field}.device_ip", problems),
                  _int_field(entry.get("rank_id"), f"{field}.rank_id", problems))
        if super_pods:
            values += (_int_field(entry.get("super_device_id"), f"{field}.super_device_id", problems),)
        if None not in values:
            devices.append(Device(index, server_id or "", *values))
    ids = [d.device_id for d in devices]
    for device_id in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{where}.device: device_id {device_id} is listed {ids.count(device_id)} times")
    return devices


def _check_devices(devices: List[Device], servers: list, problems: List[str]) -> None:
    by_ip: Dict[str, Device] = {}
    for d in devices:
        if d.device_ip in by_ip:
            other = by_ip[d.device_ip]
            problems.append(f"server_list[{d.server_index}] device_id {d.device_id}: device_ip {d.device_ip} "
                            f"is also used by server_list[{other.server_index}] device_id {other.device_id}")
        by_ip.setdefault(d.device_ip, d)
    ranks = sorted(d.rank_id for d in devices)
    listed = sum(len(s["device"]) for s in servers if isinstance(s, dict) and isinstance(s.get("device"), list))
    if len(devices) == listed and ranks != list(range(len(devices))):  # unreadable entries are reported already
        dup = sorted({r for r in ranks if ranks.count(r) > 1})
        gaps = sorted(set(range(len(devices))) - set(ranks))
        extra = sorted(set(ranks) - set(range(len(devices))))
        detail = "; ".join(f"{what} {values}" for what, values in
                           (("duplicated", dup), ("missing", gaps), ("out of range", extra)) if values)
        problems.append(f"rank_id: the {len(devices)} devices must have rank ids 0..{len(devices) - 1} ({detail})")
    counts = [len(s.get("device") or []) if isinstance(s, dict) else 0 for s in servers]
    if len(set(counts)) > 1:
        problems.append(f"server_list: servers list different device counts {counts}; HCCL needs the same "
                        "number of devices on every server")


def _check_super_pods(pods: Any, devices: List[Device], servers: Dict[str, int], problems: List[str]) -> None:
    """Version 1.2: every server in exactly one super pod; super_device_id unique within a pod."""
    if not isinstance(pods, list) or not pods:
        problems.append("super_pod_list: missing or empty; version 1.2 assigns every server to a super pod "
                        "(use version 1.0 without super pods)")
        return
    pod_of: Dict[str, int] = {}
    for p, pod in enumerate(pods):
        members = pod.get("server_list") if isinstance(pod, dict) else None
        if not isinstance(members, list) or not members:
            problems.append(f"super_pod_list[{p}]: expected an object with super_pod_id and a non-empty server_list")
            continue
        _int_field(pod.get("super_pod_id"), f"super_pod_list[{p}].super_pod_id", problems)
        for member in members:
            server_id = member.get("server_id") if isinstance(member, dict) else None
            if server_id not in servers:
                problems.append(f"super_pod_list[{p}].server_list: server_id {server_id!r} is not in server_list")
            elif server_id in pod_of:
                problems.append(f"super_pod_list[{p}].server_list: {server_id} is also in super_pod_list"
                                f"[{pod_of[server_id]}]")
            pod_of.setdefault(server_id, p)
    for server_id in sorted(set(servers) - set(pod_of)):
        problems.append(f"super_pod_list: server {server_id} is in no super pod")
    seen: Dict[Tuple[int, int], Device] = {}
    for d in devices:
        key = (pod_of.get(d.server_id, -1), d.super_device_id)
        if key in seen:
            problems.append(f"server_list[{d.server_index}] device_id {d.device_id}: super_device_id "
                            f"{d.super_device_id} is also used by rank {seen[key].rank_id} in super pod {key[0]}")
        seen.setdefault(key, d)


def logical_device_id(device_id: int, visible: Optional[str] = None) -> int:
    """The ``DEVICE_ID`` a process uses for physical device ``device_id``: its position among the sorted
    ``ASCEND_RT_VISIBLE_DEVICES`` (``visible``, default from the environment), as MindSpore maps them."""
    visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES", "") if visible is None else visible
    if not visible.strip():
        return device_id
    try:
        ids = sorted(int(item) for item in visible.split(","))
    except ValueError:
        raise UserError(f"ASCEND_RT_VISIBLE_DEVICES={visible!r} is not a comma-separated list of device "
                        "numbers, e.g. 4,5,6,7") from None
    if device_id not in ids:
        raise UserError(f"the rank table assigns device {device_id}, which ASCEND_RT_VISIBLE_DEVICES={visible} "
                        "hides; list it there or unset ASCEND_RT_VISIBLE_DEVICES")
    return ids.index(device_id)


# --------------------------------------------------------------------------- generate


def read_hccn_conf(path: str) -> Dict[int, str]:
    """Device IPs from an ``/etc/hccn.conf`` (lines ``address_<device_id>=<ip>``)."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as err:
        raise UserError(f"--hccn-conf {path}: {err.strerror}") from None
    found = {int(i): ip.strip() for i, ip in re.findall(r"^\s*address_(\d+)\s*=\s*(\S+)", text, re.M)}
    if not found:
        raise UserError(f"--hccn-conf {path}: no address_<device>=<ip> lines; copy /etc/hccn.conf of that host")
    return found


def device_ip_table(hosts: Sequence[str], devices_per_host: int, *, pattern: Optional[str] = None,
                    hccn_confs: Sequence[str] = ()) -> List[List[str]]:
    """Device IPs per host, from a pattern (``{host}`` = host index, ``{octet}`` = last number of the
    host's IP, ``{device}`` = device id, ``{rank}`` = global rank) or from one hccn.conf per host."""
    if (pattern is None) == (not hccn_confs):
        raise UserError("give the device IPs with exactly one of --device-ip-pattern or --hccn-conf")
    if pattern is not None:
        try:
            return [[pattern.format(host=h, octet=host.rsplit(".", 1)[-1], device=d, rank=h * devices_per_host + d)
                     for d in range(devices_per_host)] for h, host in enumerate(hosts)]
        except (KeyError, IndexError, ValueError) as err:
            raise UserError(f"--device-ip-pattern {pattern!r}: unknown field {err}; use {{host}}, {{octet}}, "
                            "{device}, {rank}, e.g. 192.168.10{device}.{octet}") from None
    if len(hccn_confs) != len(hosts):
        raise UserError(f"--hccn-conf: got {len(hccn_confs)} file(s) for {len(hosts)} host(s); give one per "
                        "host, in --hosts order")
    table = []
    for host, path in zip(hosts, hccn_confs):
        ips = read_hccn_conf(path)
        missing = [d for d in range(devices_per_host) if d not in ips]
        if missing:
            raise UserError(f"--hccn-conf {path} (host {host}) has no address for device(s) {missing}")
        table.append([ips[d] for d in range(devices_per_host)])
    return table


def build_rank_table(hosts: Sequence[str], device_ips: Sequence[Sequence[str]]) -> Dict[str, Any]:
    """The hccl json (v1.0) for ``hosts`` in order; ranks numbered host by host, device by device."""
    servers, rank = [], 0
    for host, ips in zip(hosts, device_ips):
        entries = []
        for device_id, ip in enumerate(ips):
            entries.append({"device_id": str(device_id), "device_ip": ip, "rank_id": str(rank)})
            rank += 1
        servers.append({"server_id": host, "device": entries, "host_nic_ip": "reserve"})
    return {"version": "1.0", "server_count": str(len(servers)), "server_list": servers, "status": "completed"}


def check_rank_table(table: Dict[str, Any], name: str) -> None:
    """Raise :class:`RankTableError` when a table built in memory has problems."""
    problems: List[str] = []
    _check(table, problems)
    if problems:
        raise RankTableError(name, problems)
