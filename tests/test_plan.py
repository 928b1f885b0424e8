"""The launch plan's derivations beyond the guide: xPyD with data parallelism, flags, containers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import JsonValue

from cpconsole.core.plan import IMAGE_SHELL, build_plan, render_flags
from cpconsole.core.profile import load_profile, load_profile_data, load_profile_text
from cpconsole.core.render import format_command, render_script

from .conftest import PROFILES, run_sh
from .test_profile_loader import MINIMAL


@pytest.fixture(scope="module")
def xpyd():  # type: ignore[no-untyped-def]
    return build_plan(load_profile(PROFILES / "deepseek-2p1d-dp.yaml"))


def flag_value(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_xpyd_processes_and_api_servers(xpyd) -> None:  # type: ignore[no-untyped-def]
    assert [p.name for p in xpyd.processes] == ["prefill-1-0", "prefill-2-0", "decode-0", "decode-1", "proxy"]
    assert [p.name for p in xpyd.processes if p.http_port] == [p.name for p in xpyd.processes]
    assert not any(p.headless for p in xpyd.processes)


def test_xpyd_data_parallel_flags_are_derived_per_node(xpyd) -> None:  # type: ignore[no-untyped-def]
    for rank, name in enumerate(["decode-0", "decode-1"]):
        argv = xpyd.process(name).argv
        assert flag_value(argv, "--data-parallel-size") == "2"
        assert flag_value(argv, "--data-parallel-size-local") == "1"
        assert flag_value(argv, "--data-parallel-start-rank") == str(rank)
        assert flag_value(argv, "--data-parallel-address") == "192.0.0.3"
        assert flag_value(argv, "--data-parallel-rpc-port") == "5980"
        assert "--data-parallel-hybrid-lb" in argv and "--nnodes" not in argv


def test_xpyd_proxy_lists_every_api_server(xpyd) -> None:  # type: ignore[no-untyped-def]
    argv = xpyd.process("proxy").argv
    words = list(argv)
    assert words[:3] == ["python3", "-m", "cpconsole.proxy"]
    assert words[words.index("--prefiller-hosts") : words.index("--decoder-hosts")] == [
        "--prefiller-hosts",
        "192.0.0.1",
        "192.0.0.2",
        "--prefiller-ports",
        "8004",
        "8004",
    ]
    assert words[words.index("--decoder-hosts") :] == [
        "--decoder-hosts",
        "192.0.0.3",
        "192.0.0.4",
        "--decoder-ports",
        "8004",
        "8004",
        "--max-retries",
        "3",
        # cpconsole drains an instance through it before a restart, with a token only it has
        "--enable-instance-api",
        "--admin-token-env",
        "CPCONSOLE_PROXY_ADMIN_TOKEN",
    ]
    assert xpyd.process("proxy").admin_env == "CPCONSOLE_PROXY_ADMIN_TOKEN"


def test_xpyd_engine_ids_are_derived_unique_and_topology_blocks_describe_both_roles(xpyd) -> None:  # type: ignore[no-untyped-def]
    configs = {
        p.name: json.loads(flag_value(p.argv, "--kv-transfer-config")) for p in xpyd.processes if p.role != "proxy"
    }
    assert [c["engine_id"] for c in configs.values()] == ["0", "1", "2", "3"]
    assert {c["kv_role"] for n, c in configs.items() if n.startswith("prefill")} == {"kv_producer"}
    assert configs["decode-1"]["kv_connector_extra_config"] == {
        "use_ascend_direct": True,
        "prefill": {"dp_size": 1, "tp_size": 16},
        "decode": {"dp_size": 2, "tp_size": 16},
    }


def test_xpyd_decode_kv_ranges_offset_by_dp_rank(xpyd) -> None:  # type: ignore[no-untyped-def]
    kv = {p.name: [(u.start, u.end) for u in p.ports if u.kind == "kv"] for p in xpyd.processes}
    assert kv["decode-0"] == [(36200, 36215)] and kv["decode-1"] == [(36216, 36231)]
    assert [(u.kind, u.start) for u in xpyd.process("decode-0").ports] == [
        ("http", 8004),
        ("dp_rpc", 5980),
        ("kv", 36200),
        ("hccl", 60000),  # HCCL's host ports: 60000-60015
    ]


def test_container_applies_to_vllm_but_proxy_opts_out(xpyd) -> None:  # type: ignore[no-untyped-def]
    assert {p.container for p in xpyd.processes if p.role != "proxy"} == {"vllm-ascend"}
    assert xpyd.process("proxy").container is None
    script = render_script(xpyd.process("decode-0"))
    assert script.splitlines()[2] == "exec docker exec \\"
    lines = script.splitlines()
    at = lines.index("    vllm-ascend \\")  # in there, the process keeps its group id where stop finds it
    # after the image's ~/.bashrc (docker exec reads none), then the profile's env, as the guide's shell
    assert lines[at + 1] == "    setsid -w bash -c '" + IMAGE_SHELL[0]
    assert lines[at + 2].startswith("export ") and "--env" not in script
    end = next(i for i in range(at, len(lines)) if lines[i].startswith("echo $$"))
    assert lines[end] == f'echo $$ > "$0" && exec "$@"\' /tmp/cpconsole-{xpyd.run_key}-decode-0.pid \\'
    assert xpyd.run_key.startswith("deepseek-2p1d-dp-") and len(xpyd.run_key) == len("deepseek-2p1d-dp-") + 8
    assert lines[end + 1] == "    vllm serve /root/.cache/DeepSeek-V3.1_w8a8mix_mtp \\"
    assert xpyd.process("proxy").setup == ()  # on the node: nothing unless the profile says


def test_the_container_cli_is_the_nodes_tools_docker() -> None:
    text = (PROFILES / "deepseek-2p1d-dp.yaml").read_text()
    text = text.replace("defaults:\n", "defaults:\n  tools: {docker: [sudo, docker]}\n", 1)
    plan = build_plan(load_profile_text(text))
    # sudo never waits on a password: -n makes a prompt its error
    assert render_script(plan.process("decode-0")).splitlines()[2] == "exec sudo -n docker exec \\"
    assert plan.process("decode-0").container_cli == ("sudo", "-n", "docker")


def test_render_flags() -> None:
    args: dict[str, JsonValue] = {
        "enforce_eager": True,
        "enable-prefix-caching": False,
        "seed": 1024,
        "gpu_memory_utilization": 0.8,
        "quantization": "ascend",
        "skip": None,
        "cfg": {"a": [1, 2], "b": "x"},
    }
    assert render_flags(args) == [
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--seed",
        "1024",
        "--gpu-memory-utilization",
        "0.8",
        "--quantization",
        "ascend",
        "--cfg",
        '{"a":[1,2],"b":"x"}',
    ]


def test_format_command_puts_each_flag_on_its_own_line() -> None:
    text = format_command(["vllm", "serve", "/m", "--a", "1", "--b", "--c", "x y"])
    assert text == "vllm serve /m \\\n    --a 1 \\\n    --b \\\n    --c 'x y'"


def test_no_nic_means_no_derived_network_env() -> None:
    plan = build_plan(load_profile_text(MINIMAL))
    proc = plan.process("serve-0")
    assert proc.env == ()
    assert proc.argv[:6] == ("vllm", "serve", "/models/tiny", "--host", "0.0.0.0", "--port")
    assert "--kv-transfer-config" not in proc.argv


def test_bind_node_uses_the_node_address_and_nic_per_node_overrides() -> None:
    text = MINIMAL.replace("    port: 8000", "    port: 8000\n    bind: node") + "defaults: {nic: eth0}\n"
    text = text.replace("chips: 1}", "chips: 1, address: 127.0.0.21, nic: lo}")
    proc = build_plan(load_profile_text(text)).process("serve-0")
    assert flag_value(proc.argv, "--host") == "127.0.0.21"
    assert proc.env_dict["HCCL_IF_IP"] == "127.0.0.21" and proc.env_dict["HCCL_SOCKET_IFNAME"] == "lo"


def test_nodes_plan_carries_merged_ssh_settings() -> None:
    text = MINIMAL + "defaults: {ssh: {user: ops, port: 2222}}\n"
    text = text.replace("chips: 1}", "chips: 1, ssh: {port: 22, proxy_jump: bastion}}")
    node = build_plan(load_profile_text(text)).node("n1")
    assert (node.ssh.user, node.ssh.port, node.ssh.proxy_jump) == ("ops", 22, "bastion")
    assert node.transport == "ssh" and node.run_dir == "~/.cache/cpconsole"


def test_setup_lines_come_from_the_most_specific_level(xpyd) -> None:  # type: ignore[no-untyped-def]
    text = (PROFILES / "deepseek-2p1d-dp.yaml").read_text()
    said = text.replace("defaults:\n", "defaults:\n  setup: [source /opt/cann/set_env.sh]\n", 1)
    plan = build_plan(load_profile_text(said))
    assert {p.setup for p in plan.processes} == {("source /opt/cann/set_env.sh",)}  # in a container or not
    script = render_script(plan.process("proxy"))  # on the node: bash sources, then becomes the proxy
    assert "exec bash -c 'source /opt/cann/set_env.sh\nexec \"$@\"' bash python3 -m cpconsole.proxy" in script
    none = build_plan(load_profile_text(text.replace("defaults:\n", "defaults:\n  setup: []\n", 1)))
    assert {p.setup for p in none.processes} == {()}
    assert " sh -c 'echo $$" in render_script(none.process("decode-0"))  # docker exec and nothing read


def test_on_a_node_the_profiles_env_wins_over_what_setup_lines_set(
    recorder_bin: Callable[..., Path], tmp_path: Path
) -> None:
    bin_dir = recorder_bin("recorder")
    plan = build_plan(
        load_profile_data(
            {
                "name": "setup-order",
                "model": {"path": "/m", "check_path": False},
                "defaults": {
                    "transport": "local",
                    "vllm_command": ["recorder"],
                    "setup": ["export FROM_SETUP=yes KEPT=setup", "shopt -s extglob  # a bash builtin: bash runs them"],
                    "env": {"KEPT": "profile"},
                },
                "nodes": {"n1": {"host": "127.0.0.1", "chips": 1}},
                "instances": {"s": {"role": "colocated", "nodes": ["n1"], "port": 8000, "cwd": str(tmp_path)}},
            }
        )
    )
    got = run_sh(render_script(plan.process("s-0")), path_first=bin_dir)
    assert (got["env"]["FROM_SETUP"], got["env"]["KEPT"], got["cwd"]) == ("yes", "profile", str(tmp_path))
    assert got["argv"][:1] == ["serve"]
