"""Alerts from telemetry and state: simple rules, thresholds from the profile (`alerts:`), some
holding only after a condition lasted (KV cache full for 30 s, requests waiting for 60 s)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..plan import LaunchPlan
from ..profile.schema import Alerts
from .npu_smi import NpuSmiInfo
from .vllm_metrics import VllmMetrics

Severity = Literal["critical", "warning"]


def hbm_limits(plan: LaunchPlan, margin_pct: float = 3.0) -> dict[str, float]:
    """HBM use each node is configured for: vLLM takes --gpu-memory-utilization of every chip
    (the guide's decode: 0.96), plus the runtime's own; only beyond that is HBM use news."""
    limits: dict[str, float] = {}
    for proc in plan.processes:
        argv = list(proc.argv)
        if "--gpu-memory-utilization" in argv[:-1]:
            try:
                share = float(argv[argv.index("--gpu-memory-utilization") + 1])
            except ValueError:
                continue
            limits[proc.node] = max(limits.get(proc.node, 0.0), min(100.0, share * 100 + margin_pct))
    return limits


@dataclass(frozen=True)
class Alert:
    key: str  # stable identity: the same condition raises the same key
    severity: Severity
    source: str
    message: str
    # a cause read from log lines (core/diagnosis) says what it is, where, what to do and when
    kind: str = ""
    place: str = ""
    hint: str = ""
    evidence: str = ""
    first_seen: float | None = None
    last_seen: float | None = None


@dataclass
class AlertRecord:
    """One alert's life: when it was raised and, once the condition went away, when it cleared."""

    alert: Alert
    raised_at: float
    cleared_at: float | None = None


def alert_order(alert: Alert) -> tuple[bool, str, str]:
    """Critical first, then by source and key: a list that does not reshuffle between rounds."""
    return (alert.severity != "critical", alert.source, alert.key)


@dataclass
class AlertEngine:
    rules: Alerts
    hbm_pct_by_node: Mapping[str, float] = field(default_factory=dict)
    """Per-node HBM limits above rules.hbm_pct, where vLLM was told to take more (see hbm_limits)."""
    decodes: frozenset[str] = frozenset()
    """API servers of decode instances: what waits there waits for its KV from the prefill."""
    _since: dict[str, float] = field(default_factory=dict)

    def _waiting(self, process: str, waiting: float) -> Alert:
        message = f"{waiting:.0f} request(s) waiting for over {self.rules.waiting_for_s:g} s"
        if process not in self.decodes:
            return Alert(f"waiting:{process}", "warning", process, message)
        # vLLM keeps a request that waits for its KV (WAITING_FOR_REMOTE_KVS) in the waiting queue
        return Alert(
            f"waiting:{process}",
            "warning",
            process,
            message + ": stuck waiting for their KV from the prefill",
            kind="kv_wait",
            hint="the KV transfer does not complete: look for transfer errors in the prefill's and this log "
            "(the alerts name them), check the P↔D NPU links; raise ASCEND_TRANSFER_TIMEOUT for long prompts",
        )

    def _held(self, key: str, active: bool, at: float, needed: float) -> bool:
        """True once `active` has held for `needed` seconds without a break."""
        if not active:
            self._since.pop(key, None)
            return False
        started = self._since.setdefault(key, at)
        return at - started >= needed

    def evaluate(
        self,
        at: float,
        *,
        npu: Mapping[str, NpuSmiInfo | None],
        metrics: Mapping[str, VllmMetrics | None],
        stalled: Mapping[str, str] | None = None,
    ) -> list[Alert]:
        alerts: list[Alert] = []
        for node, info in npu.items():
            for chip in info.chips if info else ():
                where = f"{node} npu {chip.npu_id}/{chip.chip_id}"
                if chip.health != "OK":
                    severity: Severity = "critical" if chip.health in ("Alarm", "Critical") else "warning"
                    alerts.append(Alert(f"health:{where}", severity, node, f"{where} health {chip.health}"))
                fraction = chip.hbm_fraction
                limit = max(self.rules.hbm_pct, self.hbm_pct_by_node.get(node, 0.0))
                if fraction is not None and fraction * 100 > limit:
                    alerts.append(Alert(f"hbm:{where}", "warning", node, f"{where} HBM {fraction:.0%} used"))
        for process, sample in metrics.items():
            total = sample.total if sample else None
            usage = total.kv_cache_usage if total and total.kv_cache_usage is not None else 0.0
            if self._held(f"kv:{process}", usage * 100 > self.rules.kv_cache_pct, at, self.rules.kv_cache_for_s):
                alerts.append(
                    Alert(
                        f"kv:{process}",
                        "warning",
                        process,
                        f"KV cache {usage:.0%} full for {self.rules.kv_cache_for_s:g} s",
                    )
                )
            waiting = total.waiting if total else 0.0
            if self._held(f"waiting:{process}", waiting > 0, at, self.rules.waiting_for_s):
                alerts.append(self._waiting(process, waiting))
        for process, reason in (stalled or {}).items():
            alerts.append(Alert(f"stalled:{process}", "critical", process, f"stalled: {reason}"))
        return sorted(alerts, key=alert_order)
