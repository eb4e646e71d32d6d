"""Ingest of mapped exports against flat canonical CSV, per row, measured side by side.

    python -m benchmarks mapped -- --events 200000 --repeat 3

Writes the same N events three ways: a flat canonical CSV; nested JSON Lines (DHS-style
audit records) read through a mapping of dotted paths (``user.id``, ``items[0].name``);
a CSV of Eastern wall-clock times with optional milliseconds read through a mapping
with two timestamp patterns and the DST checks; CloudTrail-style files whose lines list 100
records each, read through [*] paths (one event per item); and sftp-style syslog lines read
through extract patterns, a records filter and fill_down (one session line per 10 records). Each is loaded by ``ingest_paths`` into a
fresh store in its own child process (alternating, ``--repeat`` times); prints wall and
CPU seconds per file and each mapped layout's ratio to the flat CSV (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = ["event_id", "source_system", "sequence_no", "occurred_at", "event_type",
          "disclosing_agency", "recipient_agency", "actor_id", "data_elements", "record_count"]  # fmt: skip
MAPPINGS = {
    "nested": """source_system: bench-nested
kind: events
match_files: ["nested*.jsonl"]
columns: {event_id: eventId, sequence_no: seq, occurred_at: eventTime, actor_id: user.id,
          actor_role: user.role, recipient_agency: user.org.code, event_type: action.type,
          record_count: action.records, data_elements: "items[0].name"}
constants: {disclosing_agency: IRS}
ignore_columns: [client]
""",
    "local": """source_system: bench-local
kind: events
match_files: ["local*.csv"]
timezone: America/New_York
timestamp_format: ["%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S"]
""",
    "items": """source_system: bench-items
kind: events
match_files: ["items*.json"]
columns: {event_id: "Records[*].eventID", sequence_no: "Records[*].seq",
          occurred_at: "Records[*].eventTime", actor_id: "Records[*].userIdentity.arn",
          recipient_agency: "Records[*].recipient", event_type: "Records[*].eventName",
          record_count: "Records[*].records", data_elements: "Records[*].elements"}
constants: {disclosing_agency: IRS}
""",
    "lines": r"""source_system: bench-lines
kind: events
match_files: ["lines*.log"]
extract:
  line:
    - '^(?P<time>\S+) \S+ internal-sftp\[(?P<pid>\d+)\]: close "(?P<path>[^"]*)" bytes (?P<direction>read) [1-9]\d* written \d+$'
    - '^\S+ \S+ internal-sftp\[(?P<pid>\d+)\]: session opened for local user (?P<user>\S+) from'
records: {line: ': close "'}
fill_down: [user]
fill_down_within: pid
event_id_from: [time, pid, path]
columns: {occurred_at: time, event_type: direction, actor_id: user, recipient_agency: user}
constants: {disclosing_agency: IRS, data_elements: name, record_count: "1"}
values: {event_type: {read: receipt}}
ignore_columns: [line]
""",
}
ITEMS_PER_LINE = 100
RECORDS_PER_SESSION = 10


def write_inputs(folder: Path, events: int) -> dict[str, Path]:
    paths = {n: folder / f for n, f in
             (("flat", "flat.csv"), ("nested", "nested.jsonl"), ("local", "local.csv"),
              ("items", "items.json"), ("lines", "lines.log"))}  # fmt: skip
    listed: list[dict[str, object]] = []
    with (
        paths["flat"].open("w", newline="") as flat,
        paths["nested"].open("w") as nested,
        paths["local"].open("w", newline="") as local,
        paths["items"].open("w") as items,
        paths["lines"].open("w") as lines,
    ):
        flat_w, local_w = csv.writer(flat), csv.writer(local)
        flat_w.writerow(HEADER)
        local_w.writerow(HEADER)
        for i in range(events):
            month, day, hour, minute = 1 + i % 12, 1 + i % 28, i % 24, i % 60
            ms = f".{i % 1000:03d}" if i % 2 else ""
            common = [f"u{i % 50}", '["name","address"]', 1 + i % 5]
            flat_w.writerow([f"E{i}", "flat", i + 1,
                             f"2025-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00Z",
                             "receipt", "IRS", "DHS-ICE", *common])  # fmt: skip
            local_w.writerow([f"E{i}", "local", i + 1,
                              f"{month:02d}/{day:02d}/2025 {hour:02d}:{minute:02d}:00{ms}",
                              "receipt", "IRS", "DHS-ICE", *common])  # fmt: skip
            record = {
                "eventId": f"E{i}", "seq": i + 1,
                "eventTime": f"2025-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00{ms}Z",
                "user": {"id": f"u{i % 50}", "role": "analyst", "org": {"code": "DHS-ICE"}},
                "action": {"type": "receipt", "records": 1 + i % 5},
                "items": [{"name": "name"}, {"name": "address"}],
                "client": {"ip": "10.0.0.1", "agent": "cli/2.1"},
            }  # fmt: skip
            nested.write(json.dumps(record) + "\n")
            listed.append({
                "eventID": f"E{i}", "seq": i + 1, "eventTime": record["eventTime"],
                "eventName": "receipt", "recipient": "DHS-ICE", "records": 1 + i % 5,
                "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::1:user/u{i % 50}"},
                "elements": ["name", "address"], "eventSource": "s3.amazonaws.com",
            })  # fmt: skip
            if len(listed) == ITEMS_PER_LINE or i == events - 1:
                items.write(json.dumps({"Records": listed}) + "\n")
                listed = []
            pid, stamp = 1000 + i // RECORDS_PER_SESSION, record["eventTime"].replace("Z", "+00:00")
            if i % RECORDS_PER_SESSION == 0:
                lines.write(f"{stamp} h internal-sftp[{pid}]: session opened for local user"
                            f" u{i % 50} from [192.0.2.1]\n")  # fmt: skip
            lines.write(f'{stamp} h internal-sftp[{pid}]: close "/out/f{i}.csv" bytes read'
                        f" {1 + i % 5000} written 0\n")  # fmt: skip
    sources = folder / "sources"
    sources.mkdir(exist_ok=True)
    for name, text in MAPPINGS.items():
        (sources / f"bench-{name}.yaml").write_text(text)
    return paths


def _child(path: str, db: str, sources: str) -> None:
    os.environ["DWATCH_SOURCES_DIR"] = sources
    os.environ.setdefault("DWATCH_PSEUDONYM_KEY", "bench-key-not-secret-0123456789abcdef")
    from dwatch.ingest import ingest_paths
    from dwatch.store import connect

    con = connect(Path(db))
    start, cpu = time.perf_counter(), time.process_time()
    [result] = ingest_paths(con, [path])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    con.close()
    assert result.status == "loaded" and result.rows_quarantined == 0, result
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": result.rows_loaded,
                      "peak_rss_mb": peak}))  # fmt: skip


def _run(path: Path, work: Path) -> dict[str, float]:
    db = work / f"{path.stem}.duckdb"
    for leftover in (db, db.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_mapped", "--child", str(path), str(db),
         str(work / "sources")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks mapped")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dwatch-bench-mapped-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = write_inputs(work, args.events)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    for _ in range(args.repeat):
        for name, path in paths.items():
            runs[name].append(_run(path, work))
    median = {
        name: {k: statistics.median(r[k] for r in results) for k in results[0]}
        for name, results in runs.items()
    }
    flat = median["flat"]
    for name, m in median.items():
        line = (
            f"{name:7} {m['seconds']:7.2f} s {m['cpu_seconds']:7.2f} CPU-s"
            f" {m['rows'] / m['seconds']:10,.0f} rows/s  peak {m['peak_rss_mb']:,.0f} MB"
        )
        if name != "flat":
            line += (
                f"  ratio to flat {m['seconds'] / flat['seconds']:.2f}x"
                f" (CPU {m['cpu_seconds'] / flat['cpu_seconds']:.2f}x; target <= 1.5x)"
            )
        print(line)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(*sys.argv[2:5])
    else:
        main(sys.argv[1:])
