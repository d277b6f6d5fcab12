"""The operations kit under deploy/: alert rules, their promtool unit tests, the scrape example
and the Grafana dashboard only query series that signerd/adapters/metrics.py defines, with
labels and label values those series really have. promtool checks run when promtool is on PATH
(Debian's `prometheus` package ships it; scripts/install.sh installs it)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from enum import Enum
from pathlib import Path

import grpc
import pytest
from prometheus_client.metrics import MetricWrapperBase

from signerd.adapters.metrics import Metrics
from signerd.core.model import Category, Chain, Decision, TransferState

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
SCRAPE = DEPLOY / "prometheus" / "scrape.yml"
DASHBOARD = DEPLOY / "grafana" / "signerd.json"

SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created")}
TARGET_LABELS = {"job", "instance"}
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^(0|(\d+(ms|s|m|h|d|w|y))+)$")


def _values(enum: type[Enum]) -> set[str]:
    return {e.value for e in enum}


# Closed label-value sets: a selector with `label="value"` must use one of these.
LABEL_VALUES: dict[str, set[str]] = {
    "state": _values(TransferState), "chain": _values(Chain), "category": _values(Category),
    "decision": _values(Decision), "code": {c.name for c in grpc.StatusCode},
}


def _method_names() -> set[str]:
    from signerd.api.server import ALLOWED

    return set(ALLOWED)


# ------------------------------------------------------------------ the registry


def registry_series() -> dict[str, set[str]]:
    """Every series name the registry can expose -> the label names it may carry."""
    m = Metrics()
    out: dict[str, set[str]] = {}
    for metric in vars(m).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        fam = list(metric.describe())[0]
        labels = set(getattr(metric, "_labelnames", ())) | TARGET_LABELS
        if fam.type == "info":
            labels |= {"version"}
        for suffix in SUFFIXES[fam.type]:
            out[fam.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def family_names() -> set[str]:
    return {f.name for f in Metrics().registry.collect()}


def test_registry_knows_every_family_and_its_suffixed_series() -> None:
    series = registry_series()
    assert "signerd_hsm_sign_seconds_bucket" in series
    assert "signerd_grpc_requests_total" in series and "signerd_hsm_up" in series
    assert "signerd_build_info" in series
    assert {"method", "code"} <= series["signerd_grpc_requests_total"]
    for fam in Metrics().registry.collect():
        assert fam.name.startswith("signerd_"), fam.name
        assert len(fam.documentation) >= 15 and fam.documentation.endswith("."), fam.name


# ------------------------------------------------------------------ PromQL checks


SELECTOR = re.compile(r"\b(signerd_[a-z0-9_]+)\b(\s*\{([^}]*)\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def check_promql(expr: str, where: str, series: dict[str, set[str]]) -> set[str]:
    """Assert every signerd_* series exists, every matcher uses a label the series has and
    every exact value of a closed-set label is real. Returns the series names used."""
    used: set[str] = set()
    labels_in_scope: set[str] = set(TARGET_LABELS)
    for m in SELECTOR.finditer(expr):
        name = m.group(1)
        assert name in series, f"{where}: {name} is not a series of signerd/adapters/metrics.py"
        used.add(name)
        labels_in_scope |= series[name]
        for label, op, value in MATCHER.findall(m.group(3) or ""):
            assert label in series[name], f"{where}: {name} has no label {label!r}"
            if op == "=" and label in LABEL_VALUES:
                assert value in LABEL_VALUES[label], f"{where}: {label}={value!r} never occurs"
            if op == "=" and label == "method":
                assert value in _method_names(), f"{where}: no RPC method {value!r}"
    for m in GROUPING.finditer(expr):
        for label in filter(None, (x.strip() for x in m.group(1).split(","))):
            assert label in labels_in_scope, f"{where}: grouping by unknown label {label!r}"
    return used


# ------------------------------------------------------------------ alerts.yml without PyYAML


def alert_blocks(text: str) -> list[dict[str, str]]:
    """A light reading of the rules file: one dict per `- alert:` item with its expr (single
    line or block scalar), for, severity, summary and description."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if re.match(r"^\s*- alert:\s*\S", ln)]
    blocks = []
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        body = lines[i:end]
        item: dict[str, str] = {"alert": body[0].split("alert:", 1)[1].strip()}
        for j, ln in enumerate(body):
            m = re.match(r"^(\s*)(expr|for|severity|summary|description):\s*(.*)$", ln)
            if not m or m.group(2) in item:
                continue
            indent, key, value = len(m.group(1)), m.group(2), m.group(3).strip()
            if value in ("|", "|-", ">", ">-", ""):
                more = []
                for nxt in body[j + 1:]:
                    if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                        break
                    more.append(nxt.strip())
                value = " ".join(x for x in more if x)
            item[key] = value.strip("'\"") if key != "expr" else value
        blocks.append(item)
    return blocks


def test_alert_rules_have_the_fields_an_operator_needs() -> None:
    text = ALERTS.read_text()
    assert re.search(r"^groups:\s*$", text, re.M)
    assert "\t" not in text
    blocks = alert_blocks(text)
    assert len(blocks) >= 10
    names = [b["alert"] for b in blocks]
    assert len(names) == len(set(names)), "duplicate alert names"
    for b in blocks:
        where = b["alert"]
        assert re.fullmatch(r"Signerd[A-Z][A-Za-z0-9]+", where), where
        for key in ("expr", "for", "severity", "summary", "description"):
            assert b.get(key), f"{where}: no {key}"
        assert DURATION.match(b["for"]), f"{where}: for: {b['for']!r}"
        assert b["severity"] in SEVERITIES, f"{where}: severity {b['severity']!r}"
        assert len(b["description"]) > 40, f"{where}: description too short to act on"


def test_alert_rules_parse_as_yaml() -> None:
    try:
        import yaml
    except ImportError:  # a test dependency (pyproject.toml [test]); a venv made before it
        if os.environ.get("SIGNERD_CI") == "1":
            pytest.fail("PyYAML is not installed; it is a test dependency (pyproject.toml "
                        "[test]) and SIGNERD_CI=1 forbids skipping")
        pytest.skip("PyYAML is not installed: pip install -e '.[test]'")
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert [r["alert"] for r in rules] == [b["alert"] for b in alert_blocks(ALERTS.read_text())]
    for r in rules:
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert r["labels"]["severity"] in SEVERITIES
        assert {"summary", "description"} <= set(r["annotations"])


def test_alert_rules_query_only_existing_series_and_cover_the_brief() -> None:
    series = registry_series()
    blocks = alert_blocks(ALERTS.read_text())
    used: set[str] = set()
    by_name = {}
    for b in blocks:
        used |= check_promql(b["expr"], b["alert"], series)
        by_name[b["alert"]] = b["expr"]
    for needed in ("signerd_hsm_up", "signerd_store_up", "signerd_hsm_errors_total",
                   "signerd_transfers_past_expiry", "signerd_audit_write_failures_total",
                   "signerd_hsm_sign_seconds_bucket", "signerd_policy_denials_total",
                   "signerd_grpc_permission_denied_total", "signerd_authority_violations_total"):
        assert needed in used, f"no alert on {needed}"
    not_serving = by_name["SignerdNotServing"]
    assert "signerd_hsm_up" in not_serving and "signerd_store_up" in not_serving
    assert any(re.search(r'absent\(\s*up\{job="signerd"\}\s*\)', e) for e in by_name.values())
    assert any("histogram_quantile(0.99" in e and "signerd_hsm_sign_seconds_bucket" in e
               for e in by_name.values())
    # The alerts select job="signerd": the example scrape job must be called that.
    assert re.search(r"^\s*- job_name:\s*signerd\s*$", SCRAPE.read_text(), re.M)


def test_alert_unit_tests_cover_every_alert() -> None:
    names = {b["alert"] for b in alert_blocks(ALERTS.read_text())}
    tested = set(re.findall(r"alertname:\s*(\w+)", ALERTS_TEST.read_text()))
    assert names <= tested, f"alerts without a promtool test: {sorted(names - tested)}"
    fired = set(re.findall(r"alertname:\s*(\w+)\n\s*exp_alerts:", ALERTS_TEST.read_text()))
    assert names <= fired, f"alerts never shown to fire: {sorted(names - fired)}"


# ------------------------------------------------------------------ the dashboard


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(f"{p['title']}/{t['refId']}", t["expr"])
            for p in dashboard_panels() for t in p.get("targets", [])]


def test_dashboard_is_importable_grafana_json() -> None:
    d = dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["uid"] and d["title"] and d["id"] is None
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p.get("targets"), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}" and t["expr"].strip()
    for v in ("job", "instance"):
        assert variables[v]["datasource"]["uid"] == "${DS_PROMETHEUS}"


def test_dashboard_queries_existing_series_and_shows_every_family() -> None:
    series = registry_series()
    used: set[str] = set()
    for where, expr in dashboard_exprs():
        used |= check_promql(expr, where, series)
        if "signerd_" in expr and "signerd_build_info" not in expr:
            assert 'job=~"$job"' in expr and 'instance=~"$instance"' in expr, where
    shown = {n for n in family_names() if any(s.startswith(n) for s in used)}
    assert shown == family_names(), f"families not on the dashboard: {family_names() - shown}"
    titles = " | ".join(p["title"] for p in dashboard_panels())
    for words in ("HSM", "Store", "Transfers by state", "State transitions",
                  "Approvals by decision", "Policy denials by reason", "HSM sign latency",
                  "Submit → quorum", "Quorum → signed", "gRPC requests by method and code",
                  "Permission denials", "Audit write failures", "Authority violations",
                  "Governance proposals by state", "Proposal decisions", "Authority ledger entry"):
        assert words in titles, f"no panel {words!r}"
    quantiles = {e for _, e in dashboard_exprs() if "signerd_hsm_sign_seconds_bucket" in e}
    assert any("histogram_quantile(0.5," in e for e in quantiles)
    assert any("histogram_quantile(0.99," in e for e in quantiles)


# ------------------------------------------------------------------ promtool

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed "
                                    "(Debian: apt-get install prometheus)")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@needs_promtool
def test_promtool_check_rules() -> None:
    r = promtool("check", "rules", ALERTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(alert_blocks(ALERTS.read_text()))} rules found" in r.stdout


@needs_promtool
def test_promtool_alert_unit_tests() -> None:
    r = promtool("test", "rules", ALERTS_TEST)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_check_scrape_config() -> None:
    r = promtool("check", "config", "--syntax-only", SCRAPE)
    if r.returncode != 0 and "unknown long flag" in r.stderr:
        r = promtool("check", "config", SCRAPE)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Dashboard queries become recording rules (Grafana variables replaced by what Grafana
    would interpolate), so promtool's PromQL parser checks each one."""
    subs = {"$__rate_interval": "1m", "$__range": "6h", "$job": ".*", "$instance": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, (where, expr) in enumerate(dashboard_exprs()):
        for k, v in subs.items():
            expr = expr.replace(k, v)
        assert "$" not in expr, f"{where}: unknown variable in {expr}"
        lines += [f"      - record: dashboard:query_{n}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    r = promtool("check", "rules", rules)
    assert r.returncode == 0, r.stdout + r.stderr
