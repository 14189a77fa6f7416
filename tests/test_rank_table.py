"""`ms-suite rank-table validate|generate`: the hccl json v1.0 format and one error line per problem."""
import json

import pytest

from ms_suite.cli.main import main


def table(servers: int = 2, devices: int = 2) -> dict:
    rank, server_list = 0, []
    for s in range(servers):
        entries = []
        for d in range(devices):
            entries.append({"device_id": str(d), "device_ip": f"192.168.{d}.{s + 1}", "rank_id": str(rank)})
            rank += 1
        server_list.append({"server_id": f"10.0.0.{s + 1}", "device": entries, "host_nic_ip": "reserve"})
    return {"version": "1.0", "server_count": str(servers), "server_list": server_list, "status": "completed"}


def validate(tmp_path, capsys, data) -> tuple:
    path = tmp_path / "hccl.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    code = main(["rank-table", "validate", str(path)])
    out = capsys.readouterr()
    return code, out.out, [line for line in out.err.splitlines() if line.startswith("error:")]


def test_validate_accepts_a_good_table(tmp_path, capsys):
    code, out, errors = validate(tmp_path, capsys, table())
    assert code == 0 and not errors
    assert "ok, 2 server(s), 4 devices, ranks 0..3" in out and "192.168.1.2" in out


def _break(edit):
    data = table()
    edit(data)
    return data


@pytest.mark.parametrize("data, expected", [
    ("{not json", ["not valid JSON"]),
    (_break(lambda t: t.update(version="2.0")), ["version: '2.0' is not supported"]),
    (_break(lambda t: t.update(server_count="3")), ["server_count: says 3 but server_list has 2 server(s)"]),
    (_break(lambda t: t.pop("status")), ["status: missing"]),
    (_break(lambda t: t["server_list"][1]["device"][0].update(device_ip="192.168.0.1")),
     ["server_list[1] device_id 0: device_ip 192.168.0.1 is also used by server_list[0] device_id 0"]),
    (_break(lambda t: t["server_list"][1]["device"][1].update(rank_id="5")),
     ["rank_id: the 4 devices must have rank ids 0..3 (missing [3]; out of range [5])"]),
    (_break(lambda t: t["server_list"][0]["device"][1].update(rank_id="0")),
     ["rank_id: the 4 devices must have rank ids 0..3 (duplicated [0]; missing [1])"]),
    (_break(lambda t: t["server_list"][0]["device"][1].update(device_id=1)),
     ["server_list[0].device[1].device_id: 1 is not a non-negative integer string"]),
    (_break(lambda t: t["server_list"][0].update(server_id="node-a")),
     ["server_list[0].server_id: 'node-a' is not an IPv4 address"]),
    (_break(lambda t: t["server_list"][1]["device"].pop()),
     ["server_list: servers list different device counts [2, 1]"]),
    (_break(lambda t: (t["server_list"][1].update(server_id="10.0.0.1"), t.update(status="pending"))),
     ["status: 'pending'", "server_list[1].server_id: 10.0.0.1 is also server_list[0]"]),
])
def test_validate_reports_each_problem_on_one_line(tmp_path, capsys, data, expected):
    code, _, errors = validate(tmp_path, capsys, data)
    assert code == 2 and len(errors) == len(expected), errors
    for line, fragment in zip(errors, expected):
        assert fragment in line and line.startswith(f"error: {tmp_path / 'hccl.json'}: ")


def test_validate_missing_file(capsys):
    assert main(["rank-table", "validate", "/no/such/hccl.json"]) == 2
    assert "No such file" in capsys.readouterr().err


def test_generate_from_hccn_conf_files(tmp_path, capsys):
    confs = []
    for host in (1, 2):
        conf = tmp_path / f"hccn_{host}.conf"
        conf.write_text("".join(f"address_{d}=192.98.{d}.{host}\nnetdetect_{d}=192.98.{d}.254\n" for d in range(4)))
        confs.append(str(conf))
    out = tmp_path / "hccl_8p.json"
    assert main(["rank-table", "generate", "--hosts", "10.0.0.1,10.0.0.2", "--devices-per-host", "4",
                 "--hccn-conf", *confs, "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == {"version": "1.0", "server_count": "2", "status": "completed", "server_list": [
        {"server_id": f"10.0.0.{h}", "host_nic_ip": "reserve",
         "device": [{"device_id": str(d), "device_ip": f"192.98.{d}.{h}", "rank_id": str(4 * (h - 1) + d)}
                    for d in range(4)]} for h in (1, 2)]}
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["--device-ip-pattern", "192.168.{device}.1"], "device_ip 192.168.0.1 is also used by server_list[0]"),
    (["--device-ip-pattern", "192.168.{card}.1"], "unknown field 'card'"),
    (["--hccn-conf", "/no/such.conf"], "got 1 file(s) for 2 host(s)"),
])
def test_generate_errors(tmp_path, capsys, args, fragment):
    assert main(["rank-table", "generate", "--hosts", "10.0.0.1,10.0.0.2", *args, "-o", str(tmp_path / "t.json")]) == 2
    assert fragment in capsys.readouterr().err


def super_pod_table(servers: int = 2, devices: int = 2) -> dict:
    """Version 1.2: the v1.0 table plus super_device_id per device and one super pod holding every server."""
    data = table(servers, devices)
    data["version"] = "1.2"
    for server in data["server_list"]:
        for device in server["device"]:
            device["super_device_id"] = device["rank_id"]
    data["super_pod_list"] = [{"super_pod_id": "0",
                               "server_list": [{"server_id": s["server_id"]} for s in data["server_list"]]}]
    return data


def test_validate_accepts_a_super_pod_table(tmp_path, capsys):
    code, out, errors = validate(tmp_path, capsys, super_pod_table())
    assert code == 0 and not errors and "ok, 2 server(s), 4 devices, ranks 0..3" in out


def _break_pods(edit):
    data = super_pod_table()
    edit(data)
    return data


@pytest.mark.parametrize("data, expected", [
    (_break_pods(lambda t: t.pop("super_pod_list")), ["super_pod_list: missing or empty"]),
    (_break_pods(lambda t: t["server_list"][0]["device"][0].pop("super_device_id")),
     ["server_list[0].device[0].super_device_id: None is not a non-negative integer string"]),
    (_break_pods(lambda t: t["server_list"][1]["device"][0].update(super_device_id="0")),
     ["server_list[1] device_id 0: super_device_id 0 is also used by rank 0 in super pod 0"]),
    (_break_pods(lambda t: t["super_pod_list"][0]["server_list"].pop()),
     ["super_pod_list: server 10.0.0.2 is in no super pod"]),
    (_break_pods(lambda t: t["super_pod_list"][0]["server_list"].append({"server_id": "10.0.0.9"})),
     ["super_pod_list[0].server_list: server_id '10.0.0.9' is not in server_list"]),
])
def test_validate_reports_super_pod_problems(tmp_path, capsys, data, expected):
    code, _, errors = validate(tmp_path, capsys, data)
    assert code == 2 and len(errors) == len(expected)
    for line, fragment in zip(errors, expected):
        assert fragment in line


def test_device_id_follows_visible_devices_remapping(tmp_path, monkeypatch):
    """Physical devices 4..7 made visible are devices 0..3 to the process (MindSpore's sorted mapping)."""
    from ms_suite.errors import UserError
    from ms_suite.launch.commands import Cluster, rank_table_commands
    from ms_suite.launch.rank_table import load_rank_table, logical_device_id

    data = table(1, 2)
    for k, device in enumerate(data["server_list"][0]["device"]):
        device["device_id"] = str(6 + k)
    path = tmp_path / "hccl.json"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "7,6,5,4")
    procs = rank_table_commands(Cluster(num_devices=2), load_rank_table(str(path)), ["train"], str(tmp_path))
    assert [p.env["DEVICE_ID"] for p in procs] == ["2", "3"]
    assert logical_device_id(6, "") == 6
    with pytest.raises(UserError, match="device 3, which ASCEND_RT_VISIBLE_DEVICES=4,5 hides"):
        logical_device_id(3, "4,5")
