"""The report as a plain-text table."""

from __future__ import annotations

from typing import Any


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if abs(seconds) < 10 else f"{seconds:.1f} s"


def _s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def _verdict(met: bool | None, clear: bool | None = True) -> str:
    word = {True: "met", False: "MISSED", None: "-"}[met]
    # The goal inside the median's confidence interval: these runs cannot tell.
    return f"{word}, within noise" if met is not None and clear is False else word


def _interval(stats: dict[str, Any], fmt: Any = lambda x: f"{x:.3f}") -> str:
    ci = stats.get("ci")
    text = f"{fmt(stats['median'])} [{fmt(stats['min'])}-{fmt(stats['max'])}]"
    if ci:
        text += f" {ci['coverage']:.0%} CI {fmt(ci['low'])}-{fmt(ci['high'])}"
    return f"{text} n={stats['n']}"


def _cpu(r: dict[str, Any]) -> str:
    if "a_cpu" not in r:
        return ""
    diff = r["cpu_difference"]
    return (
        f"; CPU {_ms(r['a_cpu']['median'])} / {_ms(r['b_cpu']['median'])} (+{_ms(diff['median'])})"
    )


def _comparison_row(title: str, r: dict[str, Any]) -> list[str]:
    goal = f"<= {r['goal']:.2f}" if r.get("goal") is not None else "(context)"
    return [
        title,
        f"{r['a']}: {_s(r['a_seconds']['median'])}  /  {r['b']}: {_s(r['b_seconds']['median'])}"
        + _cpu(r),
        _interval(r["ratio"]),
        goal,
        _verdict(r.get("met"), r.get("clear")),
    ]


def _fixed_row(title: str, r: dict[str, Any]) -> list[str]:
    f = r["fixed_cost"]
    return [
        title,
        f"{_ms(r['a_seconds']['median'])} vs rclone {_ms(r['b_seconds']['median'])}" + _cpu(r),
        "+" + _interval(f, _ms),
        f"<= {_ms(f['goal'])}",
        _verdict(f["met"], f["clear"]),
    ]


def _goal_row(title: str, stats: dict[str, Any], what: str = "") -> list[str]:
    goal = stats.get("goal")
    return [
        title,
        what,
        _interval(stats),
        f"<= {goal:.2f}" if goal is not None else "(context)",
        _verdict(stats.get("met"), stats.get("clear")) if goal is not None else "-",
    ]


def _transfer_rows(t: dict[str, Any]) -> list[list[str]]:
    out = []
    for mode in ("cold", "warm"):
        r = t.get("fixed", {}).get(mode)
        if r:
            out.append(_fixed_row(f"1  run-job fixed cost, {mode} (empty folder)", r))
    floor = next(iter(t.get("fixed", {}).values()), {}).get("imports_only")
    if floor:
        s = floor["seconds"]
        out.append(
            [
                "1  Python importing paho, PyYAML, pydantic (one model)",
                f"{_ms(s['median'])} [{_ms(s['min'])}-{_ms(s['max'])}]",
                "",
                "(context)",
                "-",
            ]
        )
    for key, tag, what in (("big", "1a", "per byte"), ("small", "1b", "per file")):
        r = t.get(key)
        if not r:
            continue
        out.append(_comparison_row(f"{tag} run-job vs rclone copy, {r['data']}", r))
        out.append(
            _goal_row(
                f"{tag} ... {what}: without the fixed cost",
                r["without_fixed_cost"],
                f"(run-job - {_ms(r['fixed_cost_taken_off'])}) / rclone copy",
            )
        )
    return out


def _serve_cpu(r: dict[str, Any]) -> str:
    c, rc = r["serve_cpu"], r["rclone_cpu"]
    return (
        f"serve's CPU {_ms(c['median'])} (mean {_ms(c['mean'])}), "
        f"its rclone's CPU / bare {rc['ratio']['median']:.2f}"
    )


def _serve_rows(s: dict[str, Any]) -> list[list[str]]:
    out = []
    for mode in ("cold", "warm"):
        r = s.get("fixed", {}).get(mode)
        if r:
            row = _fixed_row(f"2  serve fixed cost, {mode} (empty folder)", r)
            row[1] = f"{row[1]}; {_serve_cpu(r)}"
            out.append(row)
    for key, tag in (("big", "2a"), ("small", "2b")):
        r = s.get(key)
        if r:
            row = _comparison_row(f"{tag} serve, Run now vs rclone copy, {r['data']}", r)
            row[1] = f"{row[1]}; {_serve_cpu(r)}"
            out.append(row)
    cpu = [
        r["serve_cpu"] for r in (s.get("big"), s.get("small"), *s.get("fixed", {}).values()) if r
    ]
    if cpu:
        worst = max(cpu, key=lambda c: c["median"])
        out.append(
            [
                "2  serve's own CPU per run (worst of the rows above)",
                f"median {_ms(worst['median'])}, mean {_ms(worst['mean'])}",
                "",
                f"<= {_ms(worst['goal'])}",
                _verdict(worst["met"], worst["clear"]),
            ]
        )
    return out


def _verify_rows(v: dict[str, Any]) -> list[list[str]]:
    out = []
    if "serve" in v:
        row = _comparison_row(
            f"3  verify-then-delete in serve vs by hand, {v['serve']['data']}", v["serve"]
        )
        row[1] = f"{row[1]}; {_serve_cpu(v['serve'])}"
        out.append(row)
    r = v["by_hand"]
    out.append(_comparison_row("3  ... run-job vs by hand", r))
    if "less_startup" in r:
        out.append(
            _goal_row(
                "3  ... run-job without its start-up budget",
                r["less_startup"],
                f"(run-job - {_ms(r['startup_budget'])}) / by hand",
            )
        )
    out.append(_comparison_row("3  ... against rclone move", v["move"]))
    return out


def _flag_rows(f: dict[str, Any]) -> list[list[str]]:
    out = []
    for group in f.values():
        if not isinstance(group, dict) or "variants" not in group:
            continue
        for r in group["variants"][1:]:
            out.append(
                [
                    f"7  {group['data']}: {r['a']}",
                    f"{_s(r['a_seconds']['median'])} vs {_s(r['b_seconds']['median'])} (4/8)"
                    + _cpu(r),
                    _interval(r["ratio"]),
                    "(context)",
                    "-",
                ]
            )
    return out


def rows(report: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    res = report.get("results", {})
    if "transfer" in res:
        out += _transfer_rows(res["transfer"])
    if "serve" in res:
        out += _serve_rows(res["serve"])
    if "verify" in res:
        out += _verify_rows(res["verify"])
    if "latency" in res:
        lat = res["latency"]["latency"]
        out.append(
            [
                f"4  rclone exit -> retained terminal state ({lat['runs']} runs)",
                f"p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, max {_ms(lat['seconds']['max'])}",
                "",
                f"p99 <= {_ms(lat['goal_p99'])}",
                _verdict(lat["met"]),
            ]
        )
    if "scale" in res:
        s = res["scale"]["serve"]
        g, met = s["goals"], s["met"]
        n = s["jobs"]
        out += [
            [
                f"5  serve, {n} jobs: start -> all discovery+states",
                _s(s["publish_all_seconds"]),
                "",
                f"<= {g['publish_all']:.0f} s",
                _verdict(met["publish_all"]),
            ],
            [
                f"5  fresh subscriber gets {n} retained states",
                _s(s["fresh_subscriber_seconds"]),
                "",
                f"<= {g['fresh_subscriber']:.0f} s",
                _verdict(met["fresh_subscriber"]),
            ],
            [
                "5  idle RSS (peak)",
                f"{s['rss_mb']:.1f} MiB ({s['peak_rss_mb']:.1f} MiB), {s['threads']} threads",
                "",
                f"<= {g['rss_mb']:.0f} MB",
                _verdict(met["rss_mb"]),
            ],
            [
                f"5  idle CPU over {s['idle_window_seconds']:.0f} s",
                f"{s['idle_cpu_percent']:.2f} % of one core",
                "",
                f"<= {g['cpu_percent']:.0f} %",
                _verdict(met["cpu_percent"]),
            ],
        ]
    if "deletion" in res:
        d = res["deletion"]
        out.append(_comparison_row(f"6  delete step, {d['delete_step']['data']}", d["delete_step"]))
        out.append(_comparison_row("6  ... engine's rclone argv alone vs bare", d["rclone_argv"]))
    if "flags" in res:
        out += _flag_rows(res["flags"])
    for name, error in report.get("errors", {}).items():
        out.append([f"{name}: NOT RUN", error[:100], "", "", "FAILED"])
    return out


def _steps(title: str, b: dict[str, Any]) -> str:
    calls = ", ".join(
        f"{s['rclone']} {_ms(s['seconds'])}{' beside the previous' if s.get('beside') else ''}"
        for s in b["steps"]
    )
    cpu = ""
    if "cpu" in b:
        cpu = f"; CPU {_ms(b['cpu'])}, of it rclone {_ms(b['rclone_cpu'])}"
    return (
        f"{title}: {_s(b['total'])} = start-up before the first rclone {_ms(b['before_first_rclone'])}"
        f" + rclone running {_ms(b['in_rclone'])} ({calls})"
        f" + between calls {_ms(b['between_rclone_calls'])} + wind-down {_ms(b['after_last_rclone'])}"
        f"{cpu}"
    )


def details(report: dict[str, Any]) -> list[str]:
    """Where one instrumented run-job spent its time, per benchmark that has one."""
    res = report.get("results", {})
    lines = []
    for key in ("big", "small"):
        b = res.get("transfer", {}).get(key, {}).get("breakdown")
        if b:
            lines.append(_steps(f"1{'a' if key == 'big' else 'b'} run-job", b))
    serve = res.get("serve", {})
    for key in ("big", "small"):
        for slow in serve.get(key, {}).get("slow_runs", []):
            lines.append(
                f"2  slow serve run ({key}): {_s(slow['seconds'])}, rclone reported "
                f"{slow.get('duration_seconds')} s, CPU rclone {_ms(slow['rclone_cpu'])}"
            )
    if serve.get("method"):
        lines.append(f"2  method: {serve['method']}")
    b = res.get("verify", {}).get("by_hand", {}).get("breakdown")
    if b:
        lines.append(_steps("3  verify-then-delete run-job", b))
    lat = res.get("latency", {}).get("latency")
    if lat:
        lines.append(f"4  method: {lat['method']}")
    d = res.get("deletion", {}).get("delete_step")
    if d:
        lines.append(f"6  method: {d['method']}")
    return lines


def render(report: dict[str, Any]) -> str:
    header = ["benchmark", "medians", "median [min-max], CI of the median", "goal", "verdict"]
    table = [header, *rows(report)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for number, row in enumerate(table):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any(" CI " in row[2] for row in table[1:]):
        lines.append(
            "CI: a distribution-free confidence interval of the median (order statistics,"
            " at least 95 % with 6 or more pairs); 'within noise': the goal lies inside it."
        )
    extra = details(report)
    if extra:
        lines.append("")
        lines += extra
    measured = report.get("measured") or ({"": report["meta"]} if report.get("meta") else {})
    if measured:
        lines.append("")
    for name, m in measured.items():
        lines.append(
            f"{name + ': ' if name else ''}{m.get('date')}  pairs={m.get('pairs')}"
            f" (+{m.get('warmup')} warm-up)  cache={m.get('cache')}  load at start="
            f"{tuple(round(x, 2) for x in m.get('loadavg_at_start', ()))}  {m.get('rclone')}"
        )
    return "\n".join(lines)
