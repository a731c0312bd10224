"""All benchmarks, one run, one machine: ``make bench`` (``QUICK=1``: under two minutes).

Runs each stage's benchmark module, prints a readable table, writes every
figure to ``bench/results/<UTC time>.json`` and ends with ONE line of JSON:
measurements_per_s, frames_per_s, p99_latency_ms, cython_speedup_min,
floor_fraction, gateway_rss_mb, ledger_us_per_measurement_senml/_json (and a
few more).  Ratios are computed within this run, so a noisy shared machine
still gives comparable figures.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import pathlib
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"

# (name, file, what it measures)
STAGES = [
    ("floor", "bench_floor.py", "cbor2.loads + HMAC per frame; reference decode; node figures"),
    ("kernels", "bench_kernels.py", "each processing kernel, Cython vs pure Python"),
    ("calibration", "bench_calibration.py", "processing, writer and codec without and with calibration"),
    ("gateway", "bench_gateway.py", "ingest -> verify -> outbox -> processing"),
    ("routes", "bench_routes.py", "MQTT QoS 1 publish rate to a local Mosquitto"),
    ("sparkplug", "bench_sparkplug.py", "Sparkplug B encoder (one core) and sink into a local Mosquitto"),
    ("end_to_end", "bench_e2e.py", "load generator -> gateway -> Mosquitto -> subscriber"),
    ("modbus", "bench_modbus.py", "registers per second polled over TCP and RTU"),
    ("opcua", "bench_opcua.py", "OPC UA server: CPU and notification latency, one subscribed client"),
    ("web_console", "bench_web.py", "end to end with the web console off vs on with a page open"),
    ("ledger", "bench_ledger.py", "signed deliveries and agreement terms: µs added per measurement"),
]


def load(file: str):
    """Import a stage by its own name (its worker processes re-import it)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(file[:-3])


def run_stage(name: str, file: str, quick: bool) -> dict:
    if not (HERE / file).exists():
        return {"error": f"{file} is not there yet"}
    started = time.perf_counter()
    try:
        figures = load(file).run(quick=quick)
    except Exception as exc:  # noqa: BLE001 - one failing stage must not hide the others
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}
    figures = dict(figures) if isinstance(figures, dict) else {"result": figures}
    figures["stage_seconds"] = round(time.perf_counter() - started, 1)  # not "seconds": stages report their own
    return figures


def summary(results: dict) -> dict:
    """The one-line figures, from whatever stages produced them."""
    e2e = results.get("end_to_end", {})
    floor = results.get("floor", {})
    kernels = results.get("kernels", {})
    speedups = kernels.get("speedups", kernels) if isinstance(kernels, dict) else {}
    ratios = [v for k, v in speedups.items() if isinstance(v, (int, float)) and k not in ("seconds", "stage_seconds")]
    line = {
        "measurements_per_s": e2e.get("measurements_per_s"),
        "frames_per_s": e2e.get("frames_per_s"),
        "p99_latency_ms": e2e.get("p99_latency_ms"),
        "p50_latency_ms": e2e.get("p50_latency_ms"),
        "cython_speedup_min": round(min(ratios), 1) if ratios else None,
        "floor_fraction": None,
        "gateway_rss_mb": e2e.get("gateway_rss_mb"),
        "gateway_cpu_s_per_100k": e2e.get("gateway_cpu_s_per_100k"),
        "e2e_cython_vs_pure": e2e.get("e2e_cython_vs_pure"),
        "overload_delivered_fraction": e2e.get("overload_delivered_fraction"),
        "overload_peak_rss_mb": e2e.get("overload_peak_rss_mb"),
        "lost_after_ack": e2e.get("lost_after_ack"),
        "sparkplug_encoder_metrics_per_s": results.get("sparkplug", {}).get("encoder", {}).get("metrics_per_s"),
        "sparkplug_sink_metrics_per_s": results.get("sparkplug", {}).get("sink", {}).get("metrics_per_s"),
        "web_console_throughput_ratio": results.get("web_console", {}).get("throughput_ratio"),
        "web_console_noise": results.get("web_console", {}).get("noise"),
        # what the hash chain, the ledger and the checkpoints add (target <= 2 µs per measurement)
        "ledger_us_per_measurement_senml": results.get("ledger", {}).get("added_us_per_measurement_senml"),
        "ledger_us_per_measurement_json": results.get("ledger", {}).get("added_us_per_measurement_json"),
    }
    opcua = results.get("opcua", {})
    for key in ("gateway_cpu_share_5000_1hz", "p99_notification_ms_5000_1hz", "gateway_cpu_share_50000_0.1hz",
                "p99_notification_ms_50000_0.1hz", "data_path_ratio"):
        if key in opcua:
            line[f"opcua_{key}"] = opcua[key]
    if e2e.get("frames_per_s") and floor.get("floor_frames_per_s"):
        line["floor_fraction"] = round(e2e["frames_per_s"] / floor["floor_frames_per_s"], 3)
    return line


def print_table(results: dict) -> None:
    for name, file, what in STAGES:
        figures = results.get(name, {})
        print(f"\n== {name}: {what}")
        for key, value in figures.items():
            if isinstance(value, dict):
                print(f"  {key}:")
                for k, v in value.items():
                    print(f"    {k:<40} {format_value(v)}")
            else:
                print(f"  {key:<42} {format_value(value)}")


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark and report figures and ratios.")
    parser.add_argument("--quick", action="store_true", help="short run (under two minutes)")
    parser.add_argument("--only", action="append", help="run only this stage (repeatable)")
    args = parser.parse_args(argv)
    results: dict = {"machine": machine()}
    for name, file, _ in STAGES:
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_stage(name, file, args.quick)
    line = summary(results)
    results["summary"] = line
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfull results: {out}")
    print(json.dumps(line))
    return 0


def machine() -> dict:
    import os
    import platform

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


if __name__ == "__main__":
    sys.exit(main())
