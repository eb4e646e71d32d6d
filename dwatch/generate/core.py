"""``generate()``: write synthetic disclosure logs, request items and the ground truth.

Order of work: build the hand-made events (bulk schedules, criminal request chains,
scenarios), then stream the background in chunks, merging hand-made events in by time,
numbering each log's entries, applying log tampering and writing one file per log.
Request items and the ground truth are written last, once every event id is known.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dwatch import progress
from dwatch.errors import ConfigError
from dwatch.generate.background import Background
from dwatch.generate.log import ITEM_FIELDS, SpecialLog, TamperSpec
from dwatch.generate.rand import Streams
from dwatch.generate.scenarios import SCENARIOS, Context, inject, resolve_counts
from dwatch.generate.schedule import build_criminal_chains, build_schedule
from dwatch.generate.world import (
    World,
    load_world,
    registry_agreements,
    registry_retention_terms,
)
from dwatch.generate.writer import EXTENSIONS, FORMATS, TableWriter, event_columns, item_columns

GENERATOR_VERSION = 2  # 2: reads only while held; corrections as outcome 'correction'
DEFAULT_SCALE = 0.01
DEFAULT_CHUNK = 250_000
MIN_EVENTS = 500
_MAX_PENDING_WRITES = 70  # partitions queued for the writer thread (about one chunk)
INLINE_LABEL_LIMIT = 100_000  # beyond this many ids the labels go to a Parquet companion
ALL_FORMATS = (*FORMATS, "mixed")

_INTERNAL = ["_t", "_kind", "_ord", "_hook", "_src", "_late"]
_BODY = [
    "event_type", "disclosing_agency", "recipient_agency", "actor_id", "actor_role", "request_id",
    "legal_authority", "purpose", "data_elements", "record_count", "taxpayer_tin", "channel",
    "encrypted", "agreement_id", "case_number", "description", "outcome",
]  # fmt: skip
_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "_t": pl.Int64(), "_kind": pl.Int8(), "_ord": pl.Int64(), "_hook": pl.Int64(),
    "_src": pl.Int32(), "_late": pl.Int64(),
    # Low-cardinality text travels as categoricals: gathers move 4-byte codes, not strings.
    **{k: pl.Categorical() for k in _BODY},
    "taxpayer_tin": pl.String(),
    "data_elements": pl.List(pl.String()), "record_count": pl.Int64(), "encrypted": pl.Boolean(),
}  # fmt: skip


@dataclass
class GenerateResult:
    """What ``generate`` wrote."""

    out_dir: Path
    files: list[Path]
    ground_truth: Path
    events_by_source: dict[str, int]
    request_items: int
    scenarios: dict[str, int]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(self.events_by_source.values())


def parse_scenarios(specs: list[str] | tuple[str, ...]) -> dict[str, int]:
    """``["insider_browsing=3", "all=0"]`` -> counts; ``all`` sets every scenario."""
    out: dict[str, int] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not value.strip().isdigit():
            raise ConfigError(
                f"bad scenario spec {spec!r}",
                where="--scenario",
                fix="write NAME=COUNT, e.g. insider_browsing=3 (or all=0)",
            )
        if name == "all":
            out.update(dict.fromkeys(SCENARIOS, int(value)))
        else:
            out[name] = int(value)
    return out


def _file_format(fmt: str, kind: str) -> str:
    if fmt != "mixed":
        return fmt
    # Mixed, as real collections are: the IRS ledger as CSV, recipients' logs as JSON
    # Lines, request items as Parquet.
    return {"ledger": "csv", "recipient": "jsonl", "items": "parquet"}[kind]


def generate(
    out_dir: Path,
    *,
    events: int,
    seed: int = 7,
    fmt: str = "csv",
    scale: float = DEFAULT_SCALE,
    scenarios: Mapping[str, int] | None = None,
    chunk_events: int = DEFAULT_CHUNK,
) -> GenerateResult:
    """Write about ``events`` disclosure events (plus request items and ground_truth.json).

    ``scale`` sizes the injected bulk ICE case (1.0 = the reported 2025 sizes: ~1.28M
    names submitted, ~47k addresses disclosed). ``scenarios`` maps scenario name to the
    number of instances (default: one of each). Same arguments -> byte-identical files in
    every format, whatever ``chunk_events`` is (it only trades memory for speed).
    """
    out_dir = Path(out_dir)
    if fmt not in ALL_FORMATS:
        raise ConfigError(
            f"unknown format {fmt!r}", where="fmt", fix=f"use one of {', '.join(ALL_FORMATS)}"
        )
    if events < MIN_EVENTS:
        raise ConfigError(f"events must be at least {MIN_EVENTS}, got {events}", where="events")
    if not (0 < scale <= 1.0):
        raise ConfigError(f"scale must be in (0, 1], got {scale}", where="scale",
                          fix="1.0 is the real 2025 size; 0.01 a hundredth of it")  # fmt: skip
    if chunk_events < 1:
        raise ConfigError("chunk_events must be positive", where="chunk_events")
    counts = resolve_counts(dict(scenarios or {}))
    world = load_world()
    streams = Streams(seed)
    log = SpecialLog(world)
    build_schedule(log, streams, events)
    build_criminal_chains(log, streams, events)
    background = Background(world, streams, max(0, events - len(log.rows)))
    ctx = Context(world, log, streams, background, events, scale)
    inject(ctx, counts)
    n_bg = events - len(log.rows)
    if n_bg < events * 0.1:
        raise ConfigError(
            f"{events} events leave no room for background traffic after {len(log.rows)} "
            "scheduled and scenario events",
            where="events",
            fix="raise --events, or lower --scale / scenario counts",
        )
    background.hold_from(log)
    background.n = background.sized_for(n_bg)
    params = {
        "events": events, "seed": seed, "format": fmt, "scale": scale,
        "scenarios": counts, "window": [world.start.isoformat(), world.end.isoformat()],
        "generator_version": GENERATOR_VERSION,
    }  # fmt: skip
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _clear_previous_output(out_dir)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the output folder: {exc.strerror or exc}",
            where=str(out_dir),
            fix="choose a writable folder that is not a file",
        ) from exc
    stream = _EventStream(world, log, background, out_dir, fmt, chunk_events)
    stream.run()
    items_path, n_items = _write_items(world, log, stream, out_dir, fmt)
    files = [w.path for w in stream.writers.values()] + ([items_path] if items_path else [])
    gt = _write_ground_truth(world, log, stream, out_dir, params, files)
    by_source = {world.sources[s].source_system: w.rows for s, w in sorted(stream.writers.items())}
    return GenerateResult(
        out_dir=out_dir,
        files=sorted(files),
        ground_truth=gt,
        events_by_source=by_source,
        request_items=n_items,
        scenarios=dict(counts),
        params=params,
    )


GENERATED_PATTERNS = ("events-*.csv", "events-*.jsonl", "events-*.parquet", "request_items.*",
                      "ground_truth.json", "ground_truth_labels.parquet")  # fmt: skip


def _clear_previous_output(out_dir: Path) -> None:
    """Remove files an earlier run wrote here (only generator-named files), so a rerun with
    other options leaves no stale logs behind."""
    for pattern in GENERATED_PATTERNS:
        for path in out_dir.glob(pattern):
            path.unlink()


class _EventStream:
    def __init__(
        self,
        world: World,
        log: SpecialLog,
        background: Background,
        out_dir: Path,
        fmt: str,
        chunk: int,
    ) -> None:
        self.world, self.log, self.bg = world, log, background
        self.out_dir, self.fmt, self.chunk = out_dir, fmt, chunk
        self.writers: dict[int, TableWriter] = {}
        self.offsets = np.zeros(len(world.sources), dtype=np.int64)
        self.last_event: dict[int, str] = {}
        self.hook_event: dict[int, tuple[str, str, int]] = {}  # hook -> (source, event_id, t)
        self.late: list[tuple[str, str]] = []
        self.cols = event_columns()
        self._prefix = [a.event_prefix for a in world.sources]
        self._width = [a.event_width for a in world.sources]
        self._source_name = [a.source_system for a in world.sources]
        self._prefix_s = pl.Series(self._prefix, dtype=pl.String)
        self._width_s = pl.Series(self._width, dtype=pl.Int64)
        self._source_s = pl.Series(self._source_name, dtype=pl.Categorical)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dwatch-writer")
        self._pending: deque[Future[None]] = deque()

    def writer(self, src: int) -> TableWriter:
        if src not in self.writers:
            agency = self.world.sources[src]
            fmt = _file_format(self.fmt, "ledger" if src == 0 else "recipient")
            path = self.out_dir / f"events-{agency.source_system}.{EXTENSIONS[fmt]}"
            self.writers[src] = TableWriter(
                path, fmt, self.cols, tz=agency.tz, timestamps=agency.timestamps
            )
        return self.writers[src]

    def run(self) -> None:
        special = self.log.frame()
        if special.height:
            special = special.select(_INTERNAL + _BODY).cast(_FRAME_SCHEMA)  # type: ignore[arg-type]
        sp_t = special["_t"].to_numpy() if special.height else np.zeros(0, dtype=np.int64)
        n = self.bg.n
        bounds = [*list(range(0, n, self.chunk)), n]
        if n == 0:
            bounds = [0, 0]
        with progress.task("generate", total=n or None, unit="events") as making:
            for c0, c1 in itertools.pairwise(bounds):
                self._chunk(special, sp_t, c0, c1)
                making.advance(c1 - c0, rows=c1 - c0)
        for w in self.writers.values():
            self._submit(w, None)
        while self._pending:
            self._pending.popleft().result()
        self._pool.shutdown()

    def _chunk(self, special: pl.DataFrame, sp_t: np.ndarray, c0: int, c1: int) -> None:
        """Background events [c0, c1) merged by time with the hand-made ones they span."""
        n = self.bg.n
        lo = np.iinfo(np.int64).min if c0 == 0 else self.bg.boundary_time(c0)
        hi = np.iinfo(np.int64).max if c1 >= n else self.bg.boundary_time(c1)
        a, b = np.searchsorted(sp_t, lo, side="left"), np.searchsorted(sp_t, hi, side="left")
        parts = []
        if c1 > c0:
            parts.append(self.bg.chunk(c0, c1).cast(_FRAME_SCHEMA))  # type: ignore[arg-type]
        if b > a:
            parts.append(special.slice(int(a), int(b - a)))
        if parts:
            self._emit(pl.concat(parts, how="vertical"))

    def _submit(self, writer: TableWriter, frame: pl.DataFrame | None) -> None:
        # One writer thread: encoding and compression overlap with generating the next
        # chunk (both release the GIL); FIFO keeps each file's rows in order, and the
        # bounded queue keeps memory bounded.
        while len(self._pending) >= _MAX_PENDING_WRITES:
            self._pending.popleft().result()
        job = writer.close if frame is None else partial(writer.write, frame)
        self._pending.append(self._pool.submit(job))

    def _event_id(self, s: int, seq: int) -> str:
        return f"{self._prefix[s]}{seq:0{self._width[s]}d}"

    def _emit(self, frame: pl.DataFrame) -> None:
        # Number rows in (log, time) order, continuing from the previous chunk; compute
        # the output columns once for the whole chunk; then gather each log's rows into
        # its own frame (slices of one big gather would drag the whole chunk's buffers
        # into every file writer).
        src = frame["_src"].to_numpy()
        t = frame["_t"].to_numpy()
        order = np.lexsort((frame["_ord"].to_numpy(), frame["_kind"].to_numpy(), t, src))
        counts = np.bincount(src, minlength=len(self.offsets))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        src_sorted = src[order]
        seq = np.empty(len(src), dtype=np.int64)
        seq[order] = np.arange(len(src)) - starts[src_sorted] + self.offsets[src_sorted] + 1
        self.offsets += counts
        hooks = frame["_hook"].to_numpy()
        for i in np.flatnonzero(hooks >= 0):
            s = int(src[i])
            self.hook_event[int(hooks[i])] = (
                self._source_name[s],
                self._event_id(s, int(seq[i])),
                int(t[i]),
            )
        for i in np.flatnonzero(frame["_late"].to_numpy() > 0):
            s = int(src[i])
            self.late.append((self._source_name[s], self._event_id(s, int(seq[i]))))
        src_s = pl.Series(src)
        seq_s = pl.Series("sequence_no", seq)
        frame = frame.with_columns(
            seq_s,
            pl.concat_str(
                [
                    self._prefix_s.gather(src_s),
                    seq_s.cast(pl.String).str.zfill(self._width_s.gather(src_s)),
                ]
            ).alias("event_id"),
            self._source_s.gather(src_s).alias("source_system"),
            (pl.col("_t") - pl.col("_late")).alias("_t_out"),
        ).with_columns(_occurred_at())
        for s in np.flatnonzero(counts):
            s = int(s)
            part = frame[order[starts[s] : starts[s] + counts[s]]]
            self.last_event[s] = self._event_id(s, int(self.offsets[s]))
            part = self._tamper(s, part)
            self._submit(self.writer(s), part)

    def _tamper(self, s: int, part: pl.DataFrame) -> pl.DataFrame:
        specs = [t for t in self.log.tampers if t.source == s and (t.remaining > 0 or t.await_next)]
        if not specs:
            return part
        rows = _Rows(self.world.sources[s].source_system, part, self.last_event.get(s))
        for spec in specs:
            rows.apply(spec)
        part = part.with_columns(
            (pl.col("_t_out") - pl.Series(rows.shift)).alias("_t_out"),
            pl.Series("_row", np.arange(part.height)),
            pl.lit(0).alias("_copy"),
        )
        copies = part.filter(pl.Series(rows.dup)).with_columns(pl.lit(1).alias("_copy"))
        part = pl.concat([part.filter(pl.Series(rows.keep)), copies]).sort("_row", "_copy")
        if part.height:
            self.last_event[s] = str(part["event_id"][-1])
        return part.drop("_row", "_copy").with_columns(_occurred_at())


def _occurred_at() -> pl.Expr:
    return (
        (pl.col("_t_out") * 1_000_000)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
        .alias("occurred_at")
    )


class _Rows:
    """One log's rows in a chunk, as tampering sees them."""

    def __init__(self, source: str, part: pl.DataFrame, before: str | None) -> None:
        self.source = source
        self.part = part
        self.before = before
        self.hooks = part["_hook"].to_numpy()
        self.t = part["_t"].to_numpy()
        n = part.height
        self.keep = np.ones(n, dtype=bool)
        self.dup = np.zeros(n, dtype=bool)
        self.shift = np.zeros(n, dtype=np.int64)
        self.touched = np.zeros(n, dtype=bool)

    def event_id(self, i: int) -> str:
        return str(self.part["event_id"][int(i)])

    def apply(self, spec: TamperSpec) -> None:
        inst, source = spec.instance, self.source
        if spec.await_next:
            kept = np.flatnonzero(self.keep)
            if len(kept):
                inst.events.append((source, self.event_id(kept[0])))
                spec.await_next = False
            return
        cand = np.flatnonzero((self.hooks < 0) & (self.t >= spec.after) & ~self.touched & self.keep)
        if spec.kind == "deleted_range" and spec.remaining == spec.length and len(cand):
            # The entry just before the gap is evidence too.
            first = int(cand[0])
            before = self.event_id(first - 1) if first > 0 else self.before
            if before:
                inst.events.append((source, before))
        take = cand[: spec.remaining]
        if not len(take):
            return
        spec.remaining -= len(take)
        self.touched[take] = True
        ids = [self.event_id(i) for i in take]
        if spec.kind == "deleted_range":
            self.keep[take] = False
            inst.deleted.extend((source, e) for e in ids)
            if spec.remaining == 0:
                after = np.flatnonzero(self.keep & (np.arange(len(self.keep)) > take[-1]))
                if len(after):
                    inst.events.append((source, self.event_id(after[0])))
                else:
                    spec.await_next = True
        elif spec.kind == "duplicate":
            self.dup[take] = True
            inst.events.extend((source, e) for e in ids)
        else:
            self.shift[take] = spec.shift
            inst.events.extend((source, e) for e in ids)
        inst.details["applied"] = spec.length - spec.remaining


def _write_items(
    world: World, log: SpecialLog, stream: _EventStream, out_dir: Path, fmt: str
) -> tuple[Path | None, int]:
    if not log.items:
        return None, 0
    ifmt = _file_format(fmt, "items")
    path = out_dir / f"request_items.{EXTENSIONS[ifmt]}"
    writer = TableWriter(path, ifmt, item_columns())
    blocks = sorted(log.items, key=lambda b: (stream.hook_event[b.hook][2], b.hook))
    for block in blocks:
        source, event_id, _ = stream.hook_event[block.hook]
        for frame in block.frames():
            if "_label" not in frame.columns:
                frame = frame.with_columns(pl.lit(False).alias("_label"))
            frame = frame.with_columns(
                pl.lit(block.request_id).alias("request_id"),
                pl.lit(event_id).alias("event_id"),
                pl.lit(source).alias("source_system"),
                pl.col("item_no").cast(pl.Int64),
                *[pl.col(c).cast(pl.String) for c in ITEM_FIELDS if c != "item_no"],
            )
            if block.instance is not None:
                labelled = frame.filter(pl.col("_label"))["item_no"].to_list()
                block.instance.item_refs.extend(
                    (block.request_id, block.hook, int(i)) for i in labelled
                )
            writer.write(frame)
    writer.close()
    return path, writer.rows


_LABEL_SCHEMA = {
    "instance_id": pl.String,
    "scenario": pl.String,
    "kind": pl.String,
    "source_system": pl.String,
    "event_id": pl.String,
    "request_id": pl.String,
    "item_no": pl.Int64,
}


def _label(
    instance_id: str | None,
    scenario: str,
    kind: str,
    source: str | None,
    event_id: str,
    request_id: str | None = None,
    item_no: int | None = None,
) -> tuple[Any, ...]:
    return (instance_id, scenario, kind, source, event_id, request_id, item_no)


def _write_ground_truth(
    world: World,
    log: SpecialLog,
    stream: _EventStream,
    out_dir: Path,
    params: dict[str, Any],
    files: list[Path],
) -> Path:
    instances = []
    label_rows: list[dict[str, Any]] = []
    for inst in log.instances:
        # Sorted so the file does not depend on the order chunks were processed in.
        events = sorted(
            [list(stream.hook_event[h][:2]) for h in inst.hooks if h in stream.hook_event]
            + [list(e) for e in inst.events]
        )
        items = sorted([rid, stream.hook_event[h][1], no] for rid, h, no in inst.item_refs)
        entry = {
            "scenario": inst.scenario,
            "instance_id": inst.instance_id,
            "summary": SCENARIOS[inst.scenario].summary,
            "event_count": len(events),
            "item_count": len(items),
            "events": events,
            "items": items,
            "details": inst.details,
        }
        if inst.deleted:
            entry["deleted_events"] = sorted(list(e) for e in inst.deleted)
        instances.append(entry)
        label_rows.extend(_label(inst.instance_id, inst.scenario, "event", s, e) for s, e in events)
        label_rows.extend(
            _label(inst.instance_id, inst.scenario, "deleted", s, e) for s, e in inst.deleted
        )
        label_rows.extend(
            _label(inst.instance_id, inst.scenario, "item", None, e, r, n) for r, e, n in items
        )
    noise = {
        "late_logged": sorted(list(e) for e in stream.late),
        "corrections": [
            list(stream.hook_event[h][:2])
            for h in log.noise["correction"]
            if h in stream.hook_event
        ],
    }
    truth: dict[str, Any] = {
        "generator": "dwatch.generate",
        "params": params,
        "files": sorted(str(p.relative_to(out_dir)) for p in files),
        "counts": {
            "events_by_source": {
                world.sources[s].source_system: w.rows for s, w in sorted(stream.writers.items())
            },
            "instances_by_scenario": {
                name: sum(1 for i in log.instances if i.scenario == name) for name in SCENARIOS
            },
            "noise": {k: len(v) for k, v in noise.items()},
        },
        "instances": instances,
        "noise": noise,
        "reference": {
            "note": "The world the generator drew from: recipients, their flows and agreements.",
            "recipients": [
                {
                    "code": a.code,
                    "name": a.name,
                    "category": a.category,
                    "flow": a.flow,
                    "authority": world.flows[a.flow].authority if a.flow in world.flows else None,
                    "source_system": a.source_system,
                    "tz": a.tz,
                }
                for a in world.agencies
            ],
            "flows": {
                k: {"authority": f.authority, "purpose": f.purpose, "citations": list(f.citations)}
                for k, f in world.flows.items()
            },
            "agreements": [g.as_dict() for a in world.agencies for g in a.agreements],
            # Ready for dwatch.policy.with_entries(registry, registry_patch).
            "registry_patch": {
                "agreements": registry_agreements(world),
                "retention_terms": registry_retention_terms(world),
            },
        },
    }
    for kind, pairs in noise.items():
        label_rows.extend(_label(None, f"noise:{kind}", "event", s, e) for s, e in pairs)
    if len(label_rows) > INLINE_LABEL_LIMIT:
        # Too many ids for a readable JSON file: every label goes to a Parquet companion
        # (one row per labelled event, deleted event or request item).
        labels_path = out_dir / "ground_truth_labels.parquet"
        pl.DataFrame(label_rows, schema=_LABEL_SCHEMA, orient="row").write_parquet(labels_path)
        for entry in instances:
            entry["events"] = entry["items"] = None
            entry.pop("deleted_events", None)
        truth["labels_file"] = labels_path.name
        truth["noise"] = None
        truth["files"].append(labels_path.name)
    path = out_dir / "ground_truth.json"
    path.write_text(json.dumps(truth, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return path
