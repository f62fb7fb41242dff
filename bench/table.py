"""The report as a plain-text table."""

from __future__ import annotations

from typing import Any


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def _verdict(met: bool | None, clear: bool | None = True) -> str:
    word = {True: "met", False: "MISSED", None: "-"}[met]
    # The goal inside the median's confidence interval: these runs cannot tell.
    return f"{word}, within noise" if met is not None and clear is False else word


def _comparison_row(title: str, r: dict[str, Any]) -> list[str]:
    ratio = r["ratio"]
    goal = f"<= {r['goal']:.2f}" if r.get("goal") is not None else "(context)"
    ci = ratio.get("ci")
    interval = f" {ci['coverage']:.0%} CI {ci['low']:.2f}-{ci['high']:.2f}" if ci else ""
    return [
        title,
        f"{r['a']}: {_s(r['a_seconds']['median'])}  /  {r['b']}: {_s(r['b_seconds']['median'])}",
        f"{ratio['median']:.3f} [{ratio['min']:.3f}-{ratio['max']:.3f}]{interval} n={ratio['n']}",
        goal,
        _verdict(r.get("met"), r.get("clear")),
    ]


def rows(report: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    res = report.get("results", {})
    if "transfer" in res:
        t = res["transfer"]
        out.append(_comparison_row(f"1a transfer, {t['big']['data']}", t["big"]))
        out.append(_comparison_row(f"1b transfer, {t['small']['data']}", t["small"]))
        s = t["startup"]
        out.append(
            [
                "1  fixed cost per run (empty folder)",
                f"run-job {_s(s['a_seconds']['median'])} vs rclone {_s(s['b_seconds']['median'])}"
                f" = +{_ms(s['fixed_overhead_seconds'])}",
                f"{s['ratio']['median']:.2f} [{s['ratio']['min']:.2f}-{s['ratio']['max']:.2f}]",
                "(context)",
                "-",
            ]
        )
        if "imports_only" in s:
            floor = s["imports_only"]["seconds"]
            out.append(
                [
                    "1  Python importing paho, PyYAML, pydantic (one model)",
                    f"{_s(floor['median'])} [{_s(floor['min'])}-{_s(floor['max'])}]",
                    "",
                    "(context)",
                    "-",
                ]
            )
        for key in ("big", "small"):
            w = t[key]["ratio_without_startup"]
            out.append(
                [
                    f"1{'a' if key == 'big' else 'b'} ... without the fixed start-up cost",
                    "",
                    f"{w['median']:.3f} [{w['min']:.3f}-{w['max']:.3f}]",
                    "(context)",
                    "-",
                ]
            )
    if "verify" in res:
        v = res["verify"]
        out.append(_comparison_row(f"2  verify-then-delete, {v['by_hand']['data']}", v["by_hand"]))
        out.append(_comparison_row("2  ... against rclone move", v["move"]))
    if "latency" in res:
        lat = res["latency"]["latency"]
        out.append(
            [
                f"3  rclone exit -> retained terminal state ({lat['runs']} runs)",
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
                f"4  serve, {n} jobs: start -> all discovery+states",
                _s(s["publish_all_seconds"]),
                "",
                f"<= {g['publish_all']:.0f} s",
                _verdict(met["publish_all"]),
            ],
            [
                f"4  fresh subscriber gets {n} retained states",
                _s(s["fresh_subscriber_seconds"]),
                "",
                f"<= {g['fresh_subscriber']:.0f} s",
                _verdict(met["fresh_subscriber"]),
            ],
            [
                "4  idle RSS (peak)",
                f"{s['rss_mb']:.1f} MiB ({s['peak_rss_mb']:.1f} MiB), {s['threads']} threads",
                "",
                f"<= {g['rss_mb']:.0f} MB",
                _verdict(met["rss_mb"]),
            ],
            [
                f"4  idle CPU over {s['idle_window_seconds']:.0f} s",
                f"{s['idle_cpu_percent']:.2f} % of one core",
                "",
                f"<= {g['cpu_percent']:.0f} %",
                _verdict(met["cpu_percent"]),
            ],
        ]
    if "deletion" in res:
        d = res["deletion"]
        out.append(_comparison_row(f"5  delete step, {d['delete_step']['data']}", d["delete_step"]))
        out.append(_comparison_row("5  ... engine's rclone argv alone vs bare", d["rclone_argv"]))
    for name, error in report.get("errors", {}).items():
        out.append([f"{name}: NOT RUN", error[:100], "", "", "FAILED"])
    return out


def _steps(title: str, b: dict[str, Any]) -> str:
    calls = ", ".join(
        f"{s['rclone']} {_ms(s['seconds'])}{' beside the previous' if s.get('beside') else ''}"
        for s in b["steps"]
    )
    return (
        f"{title}: {_s(b['total'])} = start-up before the first rclone {_ms(b['before_first_rclone'])}"
        f" + rclone running {_ms(b['in_rclone'])} ({calls})"
        f" + between calls {_ms(b['between_rclone_calls'])} + wind-down {_ms(b['after_last_rclone'])}"
    )


def details(report: dict[str, Any]) -> list[str]:
    """Where one instrumented run-job spent its time, per benchmark that has one."""
    res = report.get("results", {})
    lines = []
    for key in ("big", "small"):
        b = res.get("transfer", {}).get(key, {}).get("breakdown")
        if b:
            lines.append(_steps(f"1{'a' if key == 'big' else 'b'} run-job", b))
    b = res.get("verify", {}).get("by_hand", {}).get("breakdown")
    if b:
        lines.append(_steps("2  verify-then-delete run-job", b))
    lat = res.get("latency", {}).get("latency")
    if lat:
        lines.append(f"3  method: {lat['method']}")
    d = res.get("deletion", {}).get("delete_step")
    if d:
        lines.append(f"5  method: {d['method']}")
    return lines


def render(report: dict[str, Any]) -> str:
    header = ["benchmark", "medians", "ratio median [min-max], CI of the median", "goal", "verdict"]
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
            "CI: a distribution-free confidence interval of the median ratio (order statistics,"
            " at least 95 % with 6 or more pairs); 'within noise': the goal lies inside it."
        )
    extra = details(report)
    if extra:
        lines.append("")
        lines += extra
    m = report.get("meta", {})
    if m:
        lines.append("")
        lines.append(
            f"{m.get('date')}  pairs={m.get('pairs')} (+{m.get('warmup')} warm-up)  cache={m.get('cache')}  "
            f"load at start={tuple(round(x, 2) for x in m.get('loadavg_at_start', ()))}  {m.get('rclone')}"
        )
    return "\n".join(lines)
