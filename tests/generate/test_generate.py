"""The generator's own promises: determinism, schema conformance, labels that point at
real rows, scenario counts as asked, legitimate flows that match their authorities."""

from __future__ import annotations

import datetime
import filecmp
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow.parquet as pq
import pytest

import dwatch.generate.core as core
from dwatch.errors import ConfigError
from dwatch.generate import SCENARIOS, GenerateResult, generate, parse_scenarios
from dwatch.generate.world import load_world
from dwatch.schema import load_schema
from tests.generate.conftest import SMALL_SCALE, read_events, read_items, truth

ARROW_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "int64",
    "BOOLEAN": "bool",
    "TIMESTAMPTZ": "timestamp[us, tz=UTC]",
    "VARCHAR[]": "list<element: string>",
}


def _expected_columns(table: str) -> list[tuple[str, str]]:
    """Canonical input fields in schema order, the pseudonym replaced by the raw id column."""
    spec = load_schema().tables[table]
    return [
        ("taxpayer_tin", "VARCHAR") if f.name == "taxpayer_ref" else (f.name, f.type)
        for f in spec.input_fields
    ]


def _same_tree(a: Path, b: Path) -> list[str]:
    names_a = sorted(p.name for p in a.iterdir())
    names_b = sorted(p.name for p in b.iterdir())
    assert names_a == names_b
    _, mismatch, errors = filecmp.cmpfiles(a, b, names_a, shallow=False)
    return mismatch + errors


# -- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "mixed"])
def test_same_arguments_give_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    a = generate(tmp_path / "a", events=2_000, seed=5, fmt=fmt, scale=SMALL_SCALE)
    b = generate(tmp_path / "b", events=2_000, seed=5, fmt=fmt, scale=SMALL_SCALE)
    assert len(a.files) > 10
    assert _same_tree(a.out_dir, b.out_dir) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_chunk_size_does_not_change_output(tmp_path: Path, fmt: str) -> None:
    one = generate(tmp_path / "one", events=6_000, seed=2, fmt=fmt, scale=SMALL_SCALE)
    many = generate(
        tmp_path / "many", events=6_000, seed=2, fmt=fmt, scale=SMALL_SCALE, chunk_events=377
    )
    assert _same_tree(one.out_dir, many.out_dir) == []


def test_separate_processes_with_other_hash_seeds_write_identical_files(tmp_path: Path) -> None:
    # Catches any dependence on set/dict hashing order, which differs between processes.
    code = (
        "import sys; from pathlib import Path; from dwatch.generate import generate; "
        "generate(Path(sys.argv[1]), events=1500, seed=9, fmt='mixed', scale=0.001)"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / hash_seed)], check=True, env=env)
    assert _same_tree(tmp_path / "1", tmp_path / "2") == []


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", events=2_000, seed=1, scale=SMALL_SCALE)
    b = generate(tmp_path / "b", events=2_000, seed=2, scale=SMALL_SCALE)
    ledger = "events-irs-disclosure-ledger.csv"
    assert (a.out_dir / ledger).read_bytes() != (b.out_dir / ledger).read_bytes()


# -- schema conformance -----------------------------------------------------------------


def test_csv_headers_are_the_canonical_columns(small_csv: GenerateResult) -> None:
    events = [n for n, _ in _expected_columns("disclosure_events")]
    items = [n for n, _ in _expected_columns("request_items")]
    for path in small_csv.files:
        header = path.read_text(encoding="utf-8").split("\n", 1)[0].split(",")
        assert header == (items if path.name.startswith("request_items") else events), path.name
    assert "taxpayer_ref" not in events and "authority_id" not in events  # derived on ingest


def test_parquet_types_are_the_canonical_types(medium_parquet: GenerateResult) -> None:
    for path in medium_parquet.files:
        table = "request_items" if path.name.startswith("request_items") else "disclosure_events"
        schema = pq.read_schema(path)
        got = [(f.name, str(f.type)) for f in schema]
        want = [(n, ARROW_TYPES[t]) for n, t in _expected_columns(table)]
        assert got == want, path.name


def test_jsonl_keys_and_json_types(tmp_path: Path) -> None:
    result = generate(tmp_path, events=1_500, fmt="jsonl", scale=SMALL_SCALE)
    expected = [n for n, _ in _expected_columns("disclosure_events")]
    line = json.loads(
        (tmp_path / "events-irs-disclosure-ledger.jsonl").read_text().split("\n", 1)[0]
    )
    assert list(line) == expected
    assert isinstance(line["data_elements"], list) and isinstance(line["record_count"], int)
    assert result.events > 1_000


def test_values_respect_vocabularies_and_required_fields(small_events: pl.DataFrame) -> None:
    schema = load_schema()
    vocab = schema.vocabularies
    assert set(small_events["event_type"].unique()) <= set(vocab["event_type"])
    assert set(small_events["channel"].drop_nulls().unique()) <= set(vocab["channel"])
    elements = set(small_events["data_elements"].explode().drop_nulls().unique())
    assert elements <= set(vocab["data_element"])
    assert small_events["record_count"].min() >= 1
    for name in schema.events.required:
        if name in small_events.columns:
            assert small_events[name].null_count() == 0, name


def test_timestamps_carry_explicit_offsets_local_and_z(small_events: pl.DataFrame) -> None:
    text = small_events["occurred_at"]
    assert text.str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$").all()
    assert text.str.ends_with("Z").any()
    assert text.str.contains(r"[+-]\d\d:\d\d$").any()


def test_fake_identifiers_are_never_issuable_ssns(small_csv: GenerateResult) -> None:
    tins = pl.concat(
        [
            read_events(small_csv.out_dir)["taxpayer_tin"],
            read_items(small_csv.out_dir)["taxpayer_tin"],
        ]
    ).drop_nulls()
    assert tins.len() > 100
    assert tins.str.contains(r"^(000|666)-\d\d-\d{4}$").all()


def test_sequence_numbers_increase_per_log_apart_from_tampering(small_csv: GenerateResult) -> None:
    events = read_events(small_csv.out_dir)
    gt = truth(small_csv)
    tampered = {
        e[0] for i in gt["instances"] if i["scenario"].startswith("tamper_") for e in i["events"]
    }
    for source, rows in events.group_by("source_system"):
        seq = rows["sequence_no"].to_list()
        assert seq == sorted(seq)
        if source[0] not in tampered:
            assert seq == list(range(1, len(seq) + 1)), source


# -- labels -----------------------------------------------------------------------------


def test_every_scenario_is_present_by_default(small_csv: GenerateResult) -> None:
    gt = truth(small_csv)
    got = {i["scenario"] for i in gt["instances"]}
    assert got == set(SCENARIOS)
    assert all(i["events"] for i in gt["instances"]), "every instance points at events"
    assert gt["params"]["seed"] == 11 and gt["params"]["events"] == 4_000


def test_labels_point_at_events_and_items_that_exist(small_csv: GenerateResult) -> None:
    events = read_events(small_csv.out_dir)
    items = read_items(small_csv.out_dir)
    present = set(zip(events["source_system"], events["event_id"], strict=True))
    item_keys = set(zip(items["request_id"], items["event_id"], items["item_no"], strict=True))
    gt = truth(small_csv)
    for inst in gt["instances"]:
        for source, event_id in inst["events"]:
            assert (source, event_id) in present, (inst["instance_id"], event_id)
        for request_id, event_id, item_no in inst["items"]:
            assert (request_id, event_id, item_no) in item_keys
        for source, event_id in inst.get("deleted_events", []):
            assert (source, event_id) not in present, "deleted entries must be gone"
    for kind, pairs in gt["noise"].items():
        assert pairs, kind
        assert all(tuple(p) in present for p in pairs)


def test_scenario_counts_as_asked(tmp_path: Path) -> None:
    asked = parse_scenarios(
        ["all=0", "insider_browsing=3", "no_authority=2", "tamper_duplicate_event=2"]
    )
    result = generate(tmp_path, events=8_000, scale=SMALL_SCALE, scenarios=asked)
    gt = truth(result)
    got: dict[str, int] = {}
    for inst in gt["instances"]:
        got[inst["scenario"]] = got.get(inst["scenario"], 0) + 1
    assert got == {"insider_browsing": 3, "no_authority": 2, "tamper_duplicate_event": 2}
    assert gt["counts"]["instances_by_scenario"]["volume_spike"] == 0
    assert result.scenarios["insider_browsing"] == 3
    events = read_events(result.out_dir)
    dup = events.group_by("source_system", "event_id").len().filter(pl.col("len") > 1)
    assert dup.height == 2  # exactly the two injected duplicates, nothing else


def test_no_scenarios_means_no_labels_and_no_anomalous_channels(tmp_path: Path) -> None:
    result = generate(tmp_path, events=3_000, scenarios=parse_scenarios(["all=0"]))
    gt = truth(result)
    assert gt["instances"] == []
    events = read_events(tmp_path)
    assert "DHS-ICE" not in set(events["recipient_agency"])
    assert events.filter(pl.col("channel").is_in(["email", "removable_media", "fax"])).height == 0


def test_ice_case_labels_exactly_the_placeholder_addresses(small_csv: GenerateResult) -> None:
    gt = truth(small_csv)
    (ice,) = [i for i in gt["instances"] if i["scenario"] == "ice_bulk_address_disclosure"]
    items = read_items(small_csv.out_dir)
    events = read_events(small_csv.out_dir)
    disclosure = events.filter(
        (pl.col("event_type") == "disclosure") & (pl.col("recipient_agency") == "DHS-ICE")
        & pl.col("description").str.contains("Kiteworks")
    )  # fmt: skip
    assert disclosure.height == 1
    disc_id = disclosure["event_id"][0]
    disclosed = items.filter(pl.col("event_id") == disc_id)
    assert (
        disclosed.height == disclosure["record_count"][0] == ice["details"]["addresses_disclosed"]
    )
    street = r"^\d+ .+, .+, [A-Z]{2} \d{5}$"
    placeholder = disclosed.filter(~pl.col("supplied_address").str.contains(street))
    labelled = {(r, e, n) for r, e, n in ice["items"]}
    assert labelled == set(
        zip(placeholder["request_id"], placeholder["event_id"], placeholder["item_no"], strict=True)
    )
    assert len(labelled) >= 2
    # A few percent of everything submitted is a placeholder, as in the real case.
    submitted = items.filter(
        pl.col("event_id") != disc_id, pl.col("request_id") == disclosure["request_id"][0]
    )
    share = (
        submitted.filter(~pl.col("supplied_address").str.contains(street)).height / submitted.height
    )
    assert 0.01 < share < 0.08
    # One official signed every bulk request.
    requests = events.filter(
        (pl.col("event_type") == "request") & (pl.col("recipient_agency") == "DHS-ICE")
    )
    bulk = requests.filter(pl.col("record_count") > 100)
    assert bulk.height == 3 and bulk["actor_id"].n_unique() == 1
    assert bulk["actor_role"][0] != "head_of_agency"


def test_use_after_order_falls_after_the_order_date(small_csv: GenerateResult) -> None:
    gt = truth(small_csv)
    events = read_events(small_csv.out_dir)
    world = load_world()
    order = world.raw["ice_case"]["orders"]["use_forbidden"]
    (inst,) = [i for i in gt["instances"] if i["scenario"] == "use_after_court_order"]
    ids = [e for _, e in inst["events"]]
    used = events.filter(pl.col("event_id").is_in(ids))
    assert used.height == len(ids)
    assert (used["ts"].dt.date() > order).all()
    assert set(used["event_type"]) == {"access"}


def test_tampering_is_visible_in_the_log(small_csv: GenerateResult) -> None:
    gt = truth(small_csv)
    events = read_events(small_csv.out_dir)
    by = {i["scenario"]: i for i in gt["instances"]}
    deleted = by["tamper_deleted_range"]
    source = deleted["details"]["source_system"]
    seq = sorted(events.filter(pl.col("source_system") == source)["sequence_no"].to_list())
    gaps = [(a, b) for a, b in itertools.pairwise(seq) if b - a > 1]
    assert len(gaps) == 1 and gaps[0][1] - gaps[0][0] - 1 == len(deleted["deleted_events"])
    (dup_src, dup_id), *_ = by["tamper_duplicate_event"]["events"]
    assert (
        events.filter((pl.col("source_system") == dup_src) & (pl.col("event_id") == dup_id)).height
        == 2
    )
    ooo = by["tamper_out_of_order"]
    src = ooo["details"]["source_system"]
    log = events.filter(pl.col("source_system") == src).sort("sequence_no")
    log = log.with_columns((pl.col("ts") < pl.col("ts").shift(1)).alias("back"))
    went_back = set(log.filter("back")["event_id"])
    assert {e for _, e in ooo["events"]} & went_back


def test_insider_reads_far_more_than_peers(medium_parquet: GenerateResult) -> None:
    gt = truth(medium_parquet)
    (inst,) = [i for i in gt["instances"] if i["scenario"] == "insider_browsing"]
    d = inst["details"]
    events = read_events(medium_parquet.out_dir)
    start, end = (pl.lit(x).str.to_date() for x in d["period"])
    reads = (
        events.filter(
            (pl.col("recipient_agency") == d["recipient"])
            & (pl.col("event_type") == "access")
            & (pl.col("actor_role") == d["actor_role"])
            & pl.col("ts").dt.date().is_between(start, end)
        )
        .group_by("actor_id")
        .len()
    )
    insider = reads.filter(pl.col("actor_id") == d["actor_id"])["len"][0]
    peers = reads.filter(pl.col("actor_id") != d["actor_id"])["len"]
    assert insider >= 10 * max(float(peers.median() or 0), 1.0)


def test_volume_spike_is_large_for_that_recipient(medium_parquet: GenerateResult) -> None:
    gt = truth(medium_parquet)
    (inst,) = [i for i in gt["instances"] if i["scenario"] == "volume_spike"]
    d = inst["details"]
    events = read_events(medium_parquet.out_dir)
    daily = (
        events.filter(
            (pl.col("recipient_agency") == d["recipient"]) & (pl.col("event_type") == "disclosure")
        )
        .group_by(pl.col("ts").dt.date().alias("day"))
        .len()
    )
    spike = daily.filter(pl.col("day") == pl.lit(d["day"]).str.to_date())["len"][0]
    others = daily.filter(pl.col("day") != pl.lit(d["day"]).str.to_date())["len"]
    assert spike >= 10 * float(others.median())


def test_large_label_sets_go_to_a_parquet_companion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inline = generate(tmp_path / "inline", events=2_000, scale=SMALL_SCALE)
    monkeypatch.setattr(core, "INLINE_LABEL_LIMIT", 5)
    big = generate(tmp_path / "big", events=2_000, scale=SMALL_SCALE)
    gt_inline, gt_big = truth(inline), truth(big)
    assert gt_big["labels_file"] == "ground_truth_labels.parquet"
    labels = pl.read_parquet(big.out_dir / gt_big["labels_file"])
    for inst in gt_inline["instances"]:
        mine = labels.filter(pl.col("instance_id") == inst["instance_id"])
        got = sorted(
            mine.filter(pl.col("kind") == "event").select("source_system", "event_id").rows()
        )
        assert got == sorted(tuple(e) for e in inst["events"])
        assert mine.filter(pl.col("kind") == "item").height == len(inst["items"])
    late = labels.filter(pl.col("scenario") == "noise:late_logged").height
    assert late == len(gt_inline["noise"]["late_logged"])


# -- legitimate flows -------------------------------------------------------------------


def _labelled(gt: dict) -> set[tuple[str, str]]:
    out = {tuple(e) for i in gt["instances"] for e in i["events"]}
    return out | {tuple(e) for e in gt["noise"]["corrections"]}


def test_legitimate_flows_cite_an_authority_that_permits_the_recipient(
    small_csv: GenerateResult,
) -> None:
    world = load_world()
    gt = truth(small_csv)
    events = read_events(small_csv.out_dir)
    labelled = _labelled(gt)
    flow_of = {a.code: a.flow for a in world.agencies}
    spellings = {cite: f.authority for f in world.flows.values() for cite in f.citations}
    checked = 0
    for row in events.filter(pl.col("legal_authority").is_not_null()).iter_rows(named=True):
        if (row["source_system"], row["event_id"]) in labelled:
            continue
        authority = spellings[row["legal_authority"]]
        flow = flow_of[row["recipient_agency"]]
        if flow in world.flows:
            assert authority == world.flows[flow].authority, row
            assert row["purpose"] == world.flows[flow].purpose
        else:  # criminal requesters: (i)(1) or (i)(2) for a criminal purpose only
            assert authority in {
                world.flows["criminal_i1"].authority,
                world.flows["criminal_i2"].authority,
            }
            assert row["purpose"] in {"nontax_criminal_investigation", "nontax_criminal_proceeding"}
        checked += 1
    assert checked > 1_000


def test_legitimate_traffic_keeps_to_business_hours(medium_parquet: GenerateResult) -> None:
    world = load_world()
    tz = {a.code: a.tz for a in world.agencies}
    events = read_events(medium_parquet.out_dir).filter(pl.col("event_type") == "access")
    sample = events.head(5_000)
    local_hours = [
        ts.astimezone(ZoneInfo(tz[code])).hour
        for ts, code in zip(sample["ts"], sample["recipient_agency"], strict=True)
    ]
    in_hours = sum(7 <= h < 19 for h in local_hours) / len(local_hours)
    assert in_hours > 0.9
    weekday = events["ts"].dt.weekday()
    assert (weekday >= 6).mean() < 0.05  # weekends are quiet


def test_registry_permits_every_legitimate_flow() -> None:
    policy = pytest.importorskip("dwatch.policy")
    registry = policy.load_registry()
    world = load_world()

    def category(code: str) -> str | None:
        rec = registry.recipients_by_code.get(code)
        if rec is None:
            rec = next((r for r in registry.recipients if code in r.aliases), None)
        if rec is not None:
            return rec.category
        for pattern in registry.recipient_patterns:
            if re.fullmatch(pattern.pattern, code):
                return pattern.category
        return None

    flows = [(a, world.flows[a.flow]) for a in world.recipients]
    flows += [(a, world.flows[k]) for a in world.criminal for k in ("criminal_i1", "criminal_i2")]
    problems = []
    for agency, flow in flows:
        cat = category(agency.code)
        for cite in flow.citations:
            authority_id = policy.normalise_citation(cite, registry)
            if authority_id != flow.authority:
                problems.append(f"{cite!r} -> {authority_id}, expected {flow.authority}")
                continue
            auth = registry.authorities_by_id[authority_id]
            if cat is None:
                problems.append(f"{agency.code}: registry does not know this recipient")
            elif (auth.recipient_codes or auth.recipient_categories) and (
                agency.code not in auth.recipient_codes and cat not in auth.recipient_categories
            ):
                problems.append(f"{agency.code} ({cat}) not permitted by {authority_id}")
            if auth.purposes and flow.purpose not in auth.purposes:
                problems.append(f"purpose {flow.purpose} not permitted by {authority_id}")
    assert sorted(set(problems)) == []


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "xml"}, "unknown format"),
        ({"events": 10}, "at least"),
        ({"scale": 0}, "scale"),
        ({"scenarios": {"nope": 1}}, "unknown scenario"),
        ({"scenarios": {"ice_bulk_address_disclosure": 2}}, "at most 1"),
        ({"scenarios": {"ice_bulk_address_disclosure": 0}}, "needs ice_bulk_address_disclosure"),
        ({"scenarios": {"insider_browsing": -1}}, ">= 0"),
    ],
)
def test_bad_arguments_are_refused_with_a_fix(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"events": 2_000, **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        generate(tmp_path, **args)
    assert err.value.where
    assert not any(tmp_path.iterdir()), "nothing is written on refusal"


def test_scenario_spec_parsing() -> None:
    assert parse_scenarios(["insider_browsing=3"]) == {"insider_browsing": 3}
    assert parse_scenarios(["all=0"]) == dict.fromkeys(SCENARIOS, 0)
    with pytest.raises(ConfigError, match="NAME=COUNT"):
        parse_scenarios(["insider_browsing"])


# -- the committed sample ---------------------------------------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "sample_logs"


def test_committed_sample_is_what_its_readme_command_makes(tmp_path: Path) -> None:
    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    command = re.search(r"^dwatch generate sample_logs (.+)$", readme, re.M)
    assert command, "README must state the exact command"
    from click.testing import CliRunner

    from dwatch.cli import main

    out = tmp_path / "sample"
    run = CliRunner().invoke(main, ["generate", str(out), *command.group(1).split()])
    assert run.exit_code == 0, run.output
    committed = sorted(p.name for p in SAMPLE.iterdir() if p.name != "README.md")
    assert committed == sorted(p.name for p in out.iterdir())
    _, mismatch, errors = filecmp.cmpfiles(SAMPLE, out, committed, shallow=False)
    assert mismatch + errors == []


def test_committed_sample_is_small_mixed_and_complete() -> None:
    files = [p for p in SAMPLE.iterdir() if p.name != "README.md"]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    assert {p.suffix for p in files} >= {".csv", ".jsonl", ".parquet", ".json"}
    gt = json.loads((SAMPLE / "ground_truth.json").read_text(encoding="utf-8"))
    assert {i["scenario"] for i in gt["instances"]} == set(SCENARIOS)
    recipients = {r["code"] for r in gt["reference"]["recipients"]}
    events = read_events(SAMPLE)
    seen = set(events["recipient_agency"]) & recipients
    assert len(seen) > 40  # many agencies
    spellings = {c: f.authority for f in load_world().flows.values() for c in f.citations}
    cited = {spellings.get(c) for c in events["legal_authority"].drop_nulls().unique()}
    assert len(cited - {None}) >= 7  # (d), (h), (i)(1), (i)(2), (j)(1), (l)(1), (l)(6)


def test_cli_reports_bad_scenario_cleanly(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dwatch.cli import main

    run = CliRunner().invoke(main, ["generate", str(tmp_path), "-n", "2000", "--scenario", "x=1"])
    assert run.exit_code == 2
    assert "unknown scenario 'x'" in run.output and "fix:" in run.output


def test_ground_truth_patch_teaches_the_registry_the_generated_agreements(
    small_csv: GenerateResult,
) -> None:
    policy = pytest.importorskip("dwatch.policy")
    patch = truth(small_csv)["reference"]["registry_patch"]
    registry = policy.with_entries(policy.load_registry(), patch, label="generator")
    world = load_world()
    for agency in world.recipients:
        for g in agency.agreements:
            entry = registry.agreements_by_id[g.agreement_id]
            last_day = entry.effective_to - datetime.timedelta(days=1)  # exclusive end
            assert last_day == g.valid_to
            assert set(entry.parties) == {"IRS", agency.code}
    suspended = [
        a for a in registry.agreements if any(h.status == "suspended" for h in a.status_history)
    ]
    assert {a.id for a in suspended} == {
        g.agreement_id for a in world.recipients for g in a.agreements if g.suspended_from
    }


def test_smallest_size_still_holds_every_scenario(tmp_path: Path) -> None:
    result = generate(tmp_path, events=1_000, scale=0.001)
    gt = truth(result)
    assert 900 <= result.events <= 1_000
    assert {i["scenario"] for i in gt["instances"]} == set(SCENARIOS)
    for inst in gt["instances"]:
        assert inst["events"], inst["instance_id"]
        if "applied" in inst["details"]:  # tampering found enough rows to act on
            assert inst["details"]["applied"] >= 1


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot write the output folder") as err:
        generate(blocker, events=1_000)
    assert err.value.where == str(blocker) and err.value.fix
    assert blocker.read_text() == "not a folder"


def test_recipients_read_only_while_they_hold_data(small_csv: GenerateResult) -> None:
    """A recipient that has destroyed every batch of a request received in the window reads
    nothing under it until the next batch arrives (the thinned schedule of a small output
    leaves such gaps); injected scenarios are left out."""
    labelled = _labelled(truth(small_csv))
    events = read_events(small_csv.out_dir).filter(
        pl.col("event_type").is_in(["receipt", "disposal", "access"])
        & pl.col("request_id").is_not_null()
        & (pl.col("source_system") != "irs-disclosure-ledger")
    )
    gaps = reads = 0
    for (_, _), rows in events.sort("ts").group_by(["recipient_agency", "request_id"]):
        held = disposed = 0
        for row in rows.sort("ts", pl.col("event_type") != "receipt").iter_rows(named=True):
            if row["event_type"] == "receipt":
                held += 1
            elif row["event_type"] == "disposal":
                held, disposed = held - 1, disposed + 1
                gaps += held <= 0
            elif (row["source_system"], row["event_id"]) not in labelled:
                reads += 1
                assert not (disposed and held <= 0), row
    assert gaps and reads > 1_000  # the check met both situations
