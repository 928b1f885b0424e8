"""Alerts from telemetry and state: simple rules, thresholds from the profile (`alerts:`), some
holding only after a condition lasted (KV cache full for 30 s, requests waiting for 60 s)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..logsearch import ERROR_LINE
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


@dataclass
class AlertEngine:
    rules: Alerts
    hbm_pct_by_node: Mapping[str, float] = field(default_factory=dict)
    """Per-node HBM limits above rules.hbm_pct, where vLLM was told to take more (see hbm_limits)."""
    _since: dict[str, float] = field(default_factory=dict)

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
        log_lines: Mapping[str, Iterable[str]] | None = None,
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
                alerts.append(
                    Alert(
                        f"waiting:{process}",
                        "warning",
                        process,
                        f"{waiting:.0f} request(s) waiting for over {self.rules.waiting_for_s:g} s",
                    )
                )
        for process, reason in (stalled or {}).items():
            alerts.append(Alert(f"stalled:{process}", "critical", process, f"stalled: {reason}"))
        if self.rules.error_lines:
            for process, lines in (log_lines or {}).items():
                errors = [line for line in lines if ERROR_LINE.search(line)]
                if errors:
                    alerts.append(
                        Alert(
                            f"error-line:{process}",
                            "warning",
                            process,
                            f"{len(errors)} error line(s); last: {errors[-1].strip()[:120]}",
                        )
                    )
        return sorted(alerts, key=lambda a: (a.severity != "critical", a.source, a.key))
