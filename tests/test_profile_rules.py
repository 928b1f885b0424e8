"""Every rule: a profile that breaks it, the file:line:col it names, and how it says to fix it.

Each case starts from the guide's profile and changes one thing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cpconsole.core.plan import build_plan
from cpconsole.core.profile import Finding, ProfileError, load_profile, load_profile_text
from cpconsole.core.profile.versions import at_least, version_key

from .conftest import PROFILES, line_of, write_profile

GUIDE_PROFILE = (PROFILES / "deepseek-v3.1-cp-1p1d.yaml").read_text()


def variant(old: str, new: str, *, count: int = 1) -> str:
    assert GUIDE_PROFILE.count(old) >= count, old
    return GUIDE_PROFILE.replace(old, new, count)


def errors_of(tmp_path: Path, text: str) -> list[Finding]:
    path = write_profile(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    for finding in caught.value.findings:
        assert str(finding).startswith(f"{path}:{finding.line}:{finding.column}: ")
    return caught.value.findings


def findings_of(tmp_path: Path, text: str, severity: str) -> list[Finding]:
    loaded = load_profile(write_profile(tmp_path, text))
    return [f for f in loaded.findings if f.severity == severity]


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, "\n".join(map(str, findings))
    return findings[0]


def test_dcp_must_divide_tp(tmp_path: Path) -> None:
    text = variant("decode_context_parallel_size: 8", "decode_context_parallel_size: 6")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "decode_context_parallel_size: 6")
    assert error.column == 7
    assert error.dotted == "instances.prefill.vllm_args.decode_context_parallel_size"
    assert error.message == "6 does not divide tensor_parallel_size 16 (choose 1, 2, 4, 8 or 16)"


def test_dcp_cannot_exceed_tp(tmp_path: Path) -> None:
    text = variant("decode_context_parallel_size: 8", "decode_context_parallel_size: 32")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "decode_context_parallel_size: 32")
    assert "32 does not divide tensor_parallel_size 16" in error.message


def test_interleave_must_equal_block_size_with_cp_and_a_connector(tmp_path: Path) -> None:
    text = variant("cp_kv_cache_interleave_size: 128", "cp_kv_cache_interleave_size: 64")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "cp_kv_cache_interleave_size: 64")
    assert "cp_kv_cache_interleave_size 64 must equal block_size 128" in error.message
    assert error.message.endswith("set cp_kv_cache_interleave_size: 128")


def test_interleave_left_at_its_default_is_reported_on_the_instance(tmp_path: Path) -> None:
    text = variant("      cp_kv_cache_interleave_size: 128\n", "")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "  prefill:", line_of(text, "instances:"))
    assert "cp_kv_cache_interleave_size 1 must equal block_size 128" in error.message


def test_world_size_must_match_the_chips(tmp_path: Path) -> None:
    text = variant(
        "      tensor_parallel_size: 16\n      enable_expert", "      tensor_parallel_size: 8\n      enable_expert"
    )
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "nodes: [prefill-a, prefill-b]")
    assert "tp 8 × pcp 2 × pp 1 × dp 1 = 16 ranks, but its 2 node(s) give it 32 chips" in error.message


def test_nodes_of_an_instance_need_equal_chip_counts(tmp_path: Path) -> None:
    text = variant("prefill-b: {host: 192.0.0.2, chips: 16}", "prefill-b: {host: 192.0.0.2, chips: 8}")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "nodes: [prefill-a, prefill-b]")
    assert "same chip count (prefill-a=16, prefill-b=8)" in error.message


def test_multi_node_instance_needs_a_master_port(tmp_path: Path) -> None:
    text = variant("    master_port: 7001\n", "")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "  prefill:", line_of(text, "instances:"))
    assert "needs master_port" in error.message


def test_engine_ids_are_unique_across_the_profile(tmp_path: Path) -> None:
    text = variant('engine_ids: ["3"]', 'engine_ids: ["1"]')
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, 'engine_ids: ["1"]')
    assert error.dotted == "instances.decode.engine_ids[0]"
    assert error.message == "engine id '1' is already used by instances.prefill; engine ids must be unique"


def test_one_engine_id_per_node(tmp_path: Path) -> None:
    text = variant('engine_ids: ["0", "1"]', 'engine_ids: ["0"]')
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, 'engine_ids: ["0"]')
    assert "1 engine id(s) for 2 node(s)" in error.message


def test_ports_on_one_host_are_unique(tmp_path: Path) -> None:
    text = variant("  port: 8005", "  port: 8004")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "port: 8004", line_of(text, "proxy:"))
    assert error.message.startswith("on 192.0.0.1, proxy proxy 8004 collides with prefill-0 http 8004")


def test_kv_ranges_count_as_listeners(tmp_path: Path) -> None:
    text = variant("  port: 8005", "  port: 30010")
    error = only(errors_of(tmp_path, text))
    assert error.dotted == "proxy.port"
    assert "on 192.0.0.1, proxy proxy 30010 collides with prefill-0 kv 30000-30015" in error.message


def test_ports_that_only_collide_on_other_hosts_are_fine(tmp_path: Path) -> None:
    text = variant("  port: 8005", "  port: 30020")  # prefill-1's kv range, but on 192.0.0.2
    assert load_profile(write_profile(tmp_path, text))


def test_kv_port_outside_mooncakes_random_range_has_no_warning(tmp_path: Path) -> None:
    text = variant("kv_port: 30000", "kv_port: 36000")
    text = text.replace("kv_port: 30200", "kv_port: 36200")
    assert [f for f in findings_of(tmp_path, text, "warning") if "Mooncake" in f.message] == []


def test_mooncake_range_scales_with_chips(tmp_path: Path) -> None:
    text = GUIDE_PROFILE.replace("chips: 16", "chips: 8").replace("tensor_parallel_size: 16", "tensor_parallel_size: 8")
    warnings = [w for w in findings_of(tmp_path, text, "warning") if "Mooncake" in w.message]
    assert warnings == []  # 8 chips reserve 20000-27999 only
    text = text.replace("kv_port: 30000", "kv_port: 27990")
    warnings = [w for w in findings_of(tmp_path, text, "warning") if "Mooncake" in w.message]
    assert [w.message.split(",")[0] for w in warnings] == [
        "prefill-0 listens on 27990-27997",
        "prefill-1 listens on 27998-28005",
    ]
    assert all("inside Mooncake's random port range 20000-27999 for 8 chips" in w.message for w in warnings)
    assert all(w.message.endswith("use kv_port ≥ 28000") for w in warnings)


def test_pcp_rejected_from_vllm_ascend_0_25_1rc1(tmp_path: Path) -> None:
    text = variant('vllm_ascend: "0.15.0rc1"', 'vllm_ascend: "0.25.1rc1"')
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "prefill_context_parallel_size: 2")
    assert "rejects prefill_context_parallel_size > 1 (from 0.25.1rc1)" in error.message


def test_pcp_with_data_parallel_rejected_from_0_22_1rc1(tmp_path: Path) -> None:
    text = variant('vllm_ascend: "0.15.0rc1"', 'vllm_ascend: "0.22.1rc1"')
    text = text.replace(
        "      tensor_parallel_size: 16\n      enable_expert_parallel: true\n      quantization: ascend\n      enforce",
        "      tensor_parallel_size: 8\n      enable_expert_parallel: true\n      quantization: ascend\n      enforce",
    ).replace("    master_port: 7001\n", "    data_parallel: {size: 2}\n")
    error = only([e for e in errors_of(tmp_path, text) if "PCP" in e.message])
    assert error.line == line_of(text, "prefill_context_parallel_size: 2")
    assert "rejects PCP together with data parallel > 1 (from 0.22.1rc1)" in error.message
    # the same profile is accepted by older vllm-ascend
    older = text.replace('"0.22.1rc1"', '"0.22.0"')
    assert load_profile(write_profile(tmp_path, older)).profile.versions.vllm_ascend == "0.22.0"


def test_removed_context_parallel_env_warns_from_0_21(tmp_path: Path) -> None:
    text = variant('vllm_ascend: "0.15.0rc1"', 'vllm_ascend: "0.21.0rc1"')
    warnings = [w for w in findings_of(tmp_path, text, "warning") if "removed" in w.message]
    warning = only(warnings)
    assert warning.line == line_of(text, 'VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL: "1"')
    assert warning.message == "removed in vllm-ascend 0.21.0rc1; it has no effect on 0.21.0rc1, drop it"
    notes = [n for n in findings_of(tmp_path, text, "info") if "engine ids" in n.message]
    assert len(notes) == 2 and all("generates engine ids itself" in n.message for n in notes)
    before = findings_of(tmp_path, variant('vllm_ascend: "0.15.0rc1"', 'vllm_ascend: "0.20.2"'), "info")
    assert not [n for n in before if "engine ids" in n.message]


def test_max_model_len_covers_smoke_and_bench(tmp_path: Path) -> None:
    text = variant("needle_tokens: 131072", "needle_tokens: 136000")
    text = text.replace("random_input_len: 131072", "random_input_len: 135900")
    errors = errors_of(tmp_path, text)
    smoke = [e for e in errors if e.dotted == "smoke.needle_tokens"]
    assert [e.line for e in smoke] == [line_of(text, "needle_tokens: 136000")] * 2  # prefill and decode
    assert (
        "smoke needle_tokens + max_tokens = 136064 exceeds instances.prefill max_model_len 136000" in smoke[0].message
    )
    bench = [e for e in errors if e.dotted == "bench.random_input_len"]
    assert [e.line for e in bench] == [line_of(text, "random_input_len: 135900")] * 2
    assert "bench random_input_len + random_output_len = 136028 exceeds" in bench[0].message
    assert len(errors) == 4


GUIDE_CONTAINER = "  container: {name: vllm-ascend, image: m.daocloud.io/quay.io/ascend/vllm-ascend:v0.15.0rc1, mounts: [/root/.cache]}"


def test_a3_container_must_map_all_16_devices(tmp_path: Path) -> None:
    devices = ", ".join(f"/dev/davinci{i}" for i in range(8))
    text = variant(GUIDE_CONTAINER, f"  container: {{name: vllm-ascend, devices: [{devices}]}}")  # made by hand
    warnings = [w for w in findings_of(tmp_path, text, "warning") if "container" in w.message]
    assert len(warnings) == 3  # every node of the guide
    assert warnings[0].line == line_of(text, "container: {name: vllm-ascend")
    assert warnings[0].dotted == "defaults.container.devices"
    assert "does not map /dev/davinci8 … /dev/davinci15 (8 devices)" in warnings[0].message
    full = ", ".join(f"/dev/davinci{i}" for i in range(16))
    ok = variant(GUIDE_CONTAINER, f"  container: {{name: vllm-ascend, devices: [{full}]}}")
    assert not [w for w in findings_of(tmp_path, ok, "warning") if "container" in w.message]


def test_devices_of_a_container_made_from_an_image_are_said_to_be_unused(tmp_path: Path) -> None:
    made = GUIDE_CONTAINER.replace("mounts:", "devices: [/dev/davinci0], mounts:")
    text = variant(GUIDE_CONTAINER, made)
    said = [w for w in findings_of(tmp_path, text, "warning") if "container" in w.message]
    assert len(said) == 1  # one container, though three nodes use it
    assert said[0].dotted == "defaults.container.devices" and said[0].line == line_of(text, "devices: [/dev/davinci0]")
    assert "its devices are not used" in said[0].message


def test_derived_flags_cannot_be_set_by_hand(tmp_path: Path) -> None:
    text = variant(
        "      seed: 1024\n      enable_chunked", "      seed: 1024\n      node_rank: 0\n      enable_chunked"
    )
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "node_rank: 0")
    assert (
        error.message
        == "--node-rank is derived by cpconsole; set the node's position in instances.prefill.nodes instead"
    )


def test_same_flag_twice_in_two_spellings(tmp_path: Path) -> None:
    text = variant(
        "      seed: 1024\n      enable_chunked", "      seed: 1024\n      max-num-seqs: 2\n      enable_chunked"
    )
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "max_num_seqs: 1")  # the later of the two
    assert error.message == "--max-num-seqs is given twice (max-num-seqs and max_num_seqs)"


def test_parallel_sizes_are_whole_numbers(tmp_path: Path) -> None:
    text = variant("prefill_context_parallel_size: 2", 'prefill_context_parallel_size: "2"')
    error = only([e for e in errors_of(tmp_path, text) if "whole number" in e.message])
    assert error.line == line_of(text, 'prefill_context_parallel_size: "2"')
    assert error.message == "prefill_context_parallel_size must be a positive whole number, not '2'"


def test_unknown_node_reference_suggests_the_right_one(tmp_path: Path) -> None:
    text = variant("nodes: [prefill-a, prefill-b]", "nodes: [prefill-a, prefil-b]")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "nodes: [prefill-a, prefil-b]")
    assert error.column == text.splitlines()[error.line - 1].index("prefil-b") + 1
    assert error.message == "no node named 'prefil-b' (did you mean 'prefill-b'?)"


def test_mooncake_needs_a_kv_port(tmp_path: Path) -> None:
    text = variant("    kv_port: 30200\n", "")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "kv_connector: {name: MooncakeConnectorV1}")
    assert "MooncakeConnectorV1 needs kv_port" in error.message


def test_pd_instance_without_connector_warns(tmp_path: Path) -> None:
    text = variant("    kv_connector: {name: MooncakeConnectorV1}\n", "").replace("    kv_port: 30200\n", "")
    warning = only([w for w in findings_of(tmp_path, text, "warning") if "kv_connector" in w.message])
    assert warning.dotted == "instances.decode"


def test_proxy_needs_prefill_and_decode(tmp_path: Path) -> None:
    text = variant("    role: decode", "    role: colocated")
    error = only([e for e in errors_of(tmp_path, text) if e.dotted == "proxy"])
    assert error.line == line_of(text, "proxy:")
    assert "needs at least one prefill and one decode instance" in error.message


def test_data_parallel_must_split_evenly_over_nodes(tmp_path: Path) -> None:
    text = (PROFILES / "deepseek-2p1d-dp.yaml").read_text()
    text = text.replace("chips: 16}  # decode", "chips: 24}  # decode").replace(
        "size: 2, rpc_port", "size: 3, rpc_port"
    )
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "size: 3, rpc_port")
    assert error.dotted == "instances.decode.data_parallel.size"
    assert error.message == "3 data-parallel ranks cannot be split evenly over 2 nodes"


def test_bind_must_be_an_address(tmp_path: Path) -> None:
    text = variant("    port: 8004\n    master_port", "    port: 8004\n    bind: everywhere\n    master_port")
    error = only(errors_of(tmp_path, text))
    assert error.line == line_of(text, "bind: everywhere")
    assert "'everywhere' is not an IP address; use one, or 'node'" in error.message


def test_disabled_host_key_checks_warn(tmp_path: Path) -> None:
    text = variant("ssh: {user: root, port: 22}", "ssh: {user: root, port: 22, verify_host_keys: false}")
    warning = only([w for w in findings_of(tmp_path, text, "warning") if "NOT verified" in w.message])
    assert warning.line == line_of(text, "verify_host_keys: false")


def test_overriding_derived_network_env_warns(tmp_path: Path) -> None:
    text = variant('    HCCL_BUFFSIZE: "768"', '    HCCL_BUFFSIZE: "768"\n    HCCL_IF_IP: 10.0.0.1')
    warning = only([w for w in findings_of(tmp_path, text, "warning") if "HCCL_IF_IP" in w.message])
    assert warning.line == line_of(text, "HCCL_IF_IP: 10.0.0.1")


def test_a_proxy_that_would_lend_the_key_to_anyone_is_warned_about(tmp_path: Path) -> None:
    text = GUIDE_PROFILE + "api_key:\n  env: DEEPSEEK_KEY\n"  # the guide's proxy: vllm-ascend's example
    warning = only([w for w in findings_of(tmp_path, text, "warning") if "asks its clients for none" in w.message])
    assert warning.line == line_of(text, "command: [python, load_balance_proxy_server_example.py]")
    ours = text.replace(
        "command: [python, load_balance_proxy_server_example.py]", "command: [python3, -m, cpconsole.proxy]"
    )
    assert not [w for w in findings_of(tmp_path, ours, "warning") if "asks its clients for none" in w.message]


def test_an_api_key_written_where_scripts_and_ps_show_it_is_refused(tmp_path: Path) -> None:
    text = variant('    HCCL_BUFFSIZE: "768"', '    HCCL_BUFFSIZE: "768"\n    VLLM_API_KEY: sk-in-clear')
    error = only([e for e in errors_of(tmp_path, text) if "VLLM_API_KEY" in e.message])
    assert error.line == line_of(text, "VLLM_API_KEY: sk-in-clear") and "give it in api_key" in error.message


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("0.13.0", "0.21.0rc1"),
        ("0.21.0rc1", "0.21.0"),
        ("0.25.1rc1", "0.25.1"),
        ("0.9.2", "0.13"),
        ("v0.25.1a1", "0.25.1b1"),
    ],
)
def test_versions_order(low: str, high: str) -> None:
    assert version_key(low) < version_key(high)  # type: ignore[operator]
    assert at_least(high, low) and not at_least(low, high)


def test_unreadable_version_warns_and_skips_version_rules(tmp_path: Path) -> None:
    text = variant('vllm_ascend: "0.15.0rc1"', 'vllm_ascend: "main"')
    warning = only([w for w in findings_of(tmp_path, text, "warning") if "version" in w.message])
    assert warning.line == line_of(text, 'vllm_ascend: "main"')
    assert "cannot read version 'main'" in warning.message


def test_batched_tokens_below_the_context_with_chunked_prefill_off_is_refused(tmp_path: Path) -> None:
    # vLLM's SchedulerConfig refuses it at start-up; validate says so at once
    text = variant("      max_num_batched_tokens: 136000", "      max_num_batched_tokens: 65536")
    found = only(errors_of(tmp_path, text))
    assert (found.line, found.column) == (line_of(text, "max_num_batched_tokens: 65536"), 7)
    assert (
        "below max_model_len 136000 with chunked prefill off" in found.message and "raise it to 136000" in found.message
    )
    # with chunked prefill on (the guide's decode: 128 of 136000) it is fine
    assert not [
        f for f in load_profile(write_profile(tmp_path, GUIDE_PROFILE)).findings if "below max_model_len" in f.message
    ]


def test_flashcomm1_without_tensor_parallelism_is_said(tmp_path: Path) -> None:
    text = variant("      tensor_parallel_size: 16", "      tensor_parallel_size: 1")  # the prefill's
    text = text.replace("decode_context_parallel_size: 8", "decode_context_parallel_size: 1", 1)
    for node in ("prefill-a: {host: 192.0.0.1", "prefill-b: {host: 192.0.0.2"):  # one chip a rank: 2 ranks, 2 chips
        text = text.replace(f"{node}, chips: 16}}", f"{node}, chips: 1}}")
    found = [f for f in findings_of(tmp_path, text, "warning") if "FLASHCOMM1" in f.message]
    assert len(found) == 1 and "needs tensor_parallel_size > 1" in found[0].message
    assert found[0].line == line_of(text, 'VLLM_ASCEND_ENABLE_FLASHCOMM1: "1"')
    assert not [f for f in findings_of(tmp_path, GUIDE_PROFILE, "warning") if "FLASHCOMM1" in f.message]  # TP 16


def test_a_multi_node_instance_without_hccl_connect_timeout_gets_a_suggestion(tmp_path: Path) -> None:
    found = only([f for f in findings_of(tmp_path, GUIDE_PROFILE, "info") if "HCCL_CONNECT_TIMEOUT" in f.message])
    assert "instances.prefill spans 2 nodes" in found.message and "EI0006" in found.message
    text = variant(
        '    VLLM_ASCEND_ENABLE_FLASHCOMM1: "1"',
        '    VLLM_ASCEND_ENABLE_FLASHCOMM1: "1"\n      HCCL_CONNECT_TIMEOUT: "600"',
    )
    assert not [f for f in findings_of(tmp_path, text, "info") if "HCCL_CONNECT_TIMEOUT" in f.message]


def test_a_connector_that_sends_no_kv_params_must_say_so_and_needs_our_proxy(tmp_path: Path) -> None:
    """ExampleConnector answers the prefill without kv_transfer_params: our proxy would refuse every
    request unless told (kv_params: false → --kv-params optional), which the example proxy cannot be."""
    example = variant(
        "kv_connector: {name: MooncakeConnectorV1, extra: {use_ascend_direct: true}}",
        "kv_connector: {name: ExampleConnector, extra: {shared_storage_path: /dev/shm/kv}}",
    )
    refused = only([f for f in errors_of(tmp_path, example) if "kv_transfer_params" in f.message])
    assert "set kv_params: false" in refused.message and refused.line == line_of(example, "name: ExampleConnector")
    told = example.replace("shared_storage_path: /dev/shm/kv}", "shared_storage_path: /dev/shm/kv}, kv_params: false")
    needs = only([f for f in errors_of(tmp_path, told) if "kv_params" in f.message])
    assert "which the example proxy cannot serve" in needs.message and needs.line == line_of(
        told, "command: [python, load_"
    )
    ours = told.replace(
        "command: [python, load_balance_proxy_server_example.py]", "command: [python3, -m, cpconsole.proxy]"
    )
    plan = build_plan(load_profile(write_profile(tmp_path, ours)))
    argv = plan.process("proxy").argv
    assert argv[argv.index("--kv-params") + 1] == "optional"
    assert "--kv-params" not in build_plan(load_profile(PROFILES / "deepseek-v3.1-cp-1p1d.yaml")).process("proxy").argv


def test_context_parallel_in_pd_needs_its_switch_below_vllm_ascend_0_21(tmp_path: Path) -> None:
    """The guide: VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL=1 "is required in the PD architecture"; from
    0.21.0rc1 it is gone (and then a warning says so)."""
    without = variant('  VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL: "1"', '  UNRELATED: "1"')
    refused = only([f for f in errors_of(tmp_path, without) if "VLLM_ASCEND_ENABLE_CONTEXT_PARALLEL" in f.message])
    assert "instances.prefill runs context parallel in a PD deployment on vllm-ascend 0.15.0rc1" in refused.message
    assert refused.line == line_of(without, "VLLM_ASCEND_ENABLE_FLASHCOMM1") - 1  # its env:
    later = without.replace('vllm_ascend: "0.15.0rc1"', 'vllm_ascend: "0.21.0rc1"')
    assert not [f for f in load_profile(write_profile(tmp_path, later)).findings if "required" in f.message]


def test_hccl_host_ports_are_claimed_and_their_base_must_leave_room(tmp_path: Path) -> None:
    """HCCL's host listeners (HCCL_IF_BASE_PORT, default 60000, and the next 15) are one of each NPU
    process's ports: preflight checks them free; a base with no room for 16 is refused at its line."""
    plan = build_plan(load_profile_text(GUIDE_PROFILE))
    assert [(u.start, u.end) for u in plan.process("decode-0").ports if u.kind == "hccl"] == [(60000, 60015)]
    moved = variant('    HCCL_BUFFSIZE: "768"', '    HCCL_BUFFSIZE: "768"\n    HCCL_IF_BASE_PORT: "61000"')
    hccl = [u for u in build_plan(load_profile_text(moved)).process("prefill-1").ports if u.kind == "hccl"]
    assert [(u.start, u.end) for u in hccl] == [(61000, 61015)]
    for bad in ("65530", "sixty", "80"):
        text = variant('    HCCL_BUFFSIZE: "768"', f'    HCCL_BUFFSIZE: "768"\n    HCCL_IF_BASE_PORT: "{bad}"')
        found = [e for e in errors_of(tmp_path, text) if "HCCL_IF_BASE_PORT" in e.message]
        assert len(found) == 1 and found[0].line == text.splitlines().index(f'    HCCL_IF_BASE_PORT: "{bad}"') + 1
        assert "use 1024–65520" in found[0].message


def test_a_relative_working_directory_in_a_container_is_refused_with_the_fix(tmp_path: Path) -> None:
    """docker exec --workdir takes an absolute directory only: the guide's `cd vllm-ascend/…` would
    not start the proxy in its container."""
    old = "  cwd: /vllm-workspace/vllm-ascend/examples/disaggregated_prefill_v1"
    assert old in GUIDE_PROFILE
    text = GUIDE_PROFILE.replace(old, "  cwd: vllm-ascend/examples/disaggregated_prefill_v1")
    error = only(errors_of(tmp_path, text))
    assert error.dotted == "proxy.cwd" and error.line == line_of(text, "  cwd: vllm-ascend/examples")
    assert "docker exec takes an absolute working directory only" in error.message
    assert "/vllm-workspace/vllm-ascend" in error.message


def test_vllms_wait_for_its_engines_must_not_end_before_the_stage_timeout() -> None:
    # vLLM exits "Timed out waiting for engine…" after VLLM_ENGINE_READY_TIMEOUT_S (600 s unset)
    def said(text: str) -> list[tuple[str, str]]:
        hits = load_profile_text(text).findings
        return [(f.severity, f.dotted) for f in hits if "VLLM_ENGINE_READY_TIMEOUT_S" in f.message]

    demo = (PROFILES / "demo.yaml").read_text()
    assert said(demo) == []  # it sets 1800, the stage's timeout
    unset = demo.replace('    VLLM_ENGINE_READY_TIMEOUT_S: "1800"', "")
    assert said(unset) == [("warning", "instances.prefill.nodes")]  # two nodes; the decode runs on one
    assert said(unset + "timeouts: {prefill: 500, decode: 500}\n") == []


def two_decodes_on_one_node(first: str, second: str, base_port: str = "60100") -> str:
    """The demo with its decode node shared by two TP-8 decode instances, each with these
    ASCEND_RT_VISIBLE_DEVICES."""
    text = (PROFILES / "demo.yaml").read_text()
    start, end = text.index("\n  decode:\n"), text.index("\nproxy:")
    decode = text[start:end].replace("tensor_parallel_size: 16", "tensor_parallel_size: 8")
    second_decode = (
        decode.replace("  decode:\n", "  decode2:\n")
        .replace("port: 8004", "port: 8014")
        .replace("kv_port: 36200", "kv_port: 36400")
        .replace('engine_ids: ["3"]', 'engine_ids: ["4"]')
        .replace("rpc_port: 5980", "rpc_port: 5990")
        .replace(
            "    vllm_args:\n",
            f'    env: {{ASCEND_RT_VISIBLE_DEVICES: "{second}", HCCL_IF_BASE_PORT: "{base_port}"}}\n    vllm_args:\n',
            1,
        )
    )
    decode = decode.replace(
        "    vllm_args:\n", f'    env: {{ASCEND_RT_VISIBLE_DEVICES: "{first}"}}\n    vllm_args:\n', 1
    )
    return text[:start] + decode + second_decode + text[end:]


def test_two_instances_share_a_node_through_their_visible_chips() -> None:
    low, high = ",".join(map(str, range(8))), ",".join(map(str, range(8, 16)))
    loaded = load_profile_text(two_decodes_on_one_node(low, high))
    assert [f for f in loaded.findings if f.severity == "error"] == []
    plan = build_plan(loaded)
    assert plan.process("decode-0").visible_devices == list(range(8))
    assert plan.process("decode2-0").visible_devices == list(range(8, 16))
    assert plan.process("decode2-0").env_dict["ASCEND_RT_VISIBLE_DEVICES"] == high  # rendered as given

    def errors(text: str) -> list[str]:
        with pytest.raises(ProfileError) as caught:
            load_profile_text(text)
        return [f"{f.dotted}: {f.message}" for f in caught.value.findings]

    overlap = errors(two_decodes_on_one_node(low, ",".join(map(str, range(4, 12)))))
    assert overlap == [
        "instances.decode2.env.ASCEND_RT_VISIBLE_DEVICES: decode2 and decode both use chip(s) 4, 5, 6, 7 of "
        "decode-a: give each instance on a shared node chips of its own with ASCEND_RT_VISIBLE_DEVICES"
    ]
    beyond = errors(two_decodes_on_one_node(low, ",".join(map(str, range(10, 18)))))
    assert beyond == [
        "instances.decode2.env.ASCEND_RT_VISIBLE_DEVICES: ASCEND_RT_VISIBLE_DEVICES names chip 16, but decode-a has chips 0-15"
    ]
    garbage = errors(two_decodes_on_one_node(low, "8-15"))
    assert garbage[0].endswith('ASCEND_RT_VISIBLE_DEVICES must list chip ids separated by commas, e.g. "0,1,2,3"')
    # four chips for a TP-8 instance: the world size no longer fits what it sees
    small = errors(two_decodes_on_one_node(low, "8,9,10,11"))
    assert any("world size tp 8" in e and "give it 4 chips" in e for e in small)
    # both on all 16 (no list): every chip twice
    assert any(
        "both use chip(s) 0, 1, 2, 3 of decode-a" in e
        for e in errors(
            two_decodes_on_one_node(low, low).replace(f'ASCEND_RT_VISIBLE_DEVICES: "{low}"', 'OMP_NUM_THREADS: "1"')
        )
    )
    # and HCCL's host ports must differ too
    clash = errors(two_decodes_on_one_node(low, high, base_port="60000"))
    assert any("decode2-0 hccl 60000-60015 collides with decode-0 hccl 60000-60015" in e for e in clash)


def test_use_ascend_direct_as_the_connector_reads_it() -> None:
    # the guide: on its prefill only. vllm-ascend reads it no more since 0.12.0rc1; before, its
    # default was true, so only `false` on one side split the transfer engines
    def said(text: str) -> list[tuple[str, str]]:
        return [(f.severity, f.dotted) for f in load_profile_text(text).findings if "use_ascend_direct" in f.message]

    demo = (PROFILES / "demo.yaml").read_text()  # vllm-ascend 0.13.0, the prefill sets it
    assert said(demo) == [("info", "instances.prefill.kv_connector.extra.use_ascend_direct")]
    older = demo.replace('vllm_ascend: "0.13.0"', 'vllm_ascend: "0.11.0"')
    assert said(older) == []  # true where set, true by default where not: one engine
    split = older.replace("extra: {use_ascend_direct: true}", "extra: {use_ascend_direct: false}")
    assert said(split) == [("warning", "instances.prefill.kv_connector.extra.use_ascend_direct")]
