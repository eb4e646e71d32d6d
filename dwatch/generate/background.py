"""Legitimate background traffic, generated vectorised one chunk at a time.

Background event ``i`` (0 <= i < n) draws only from counter-based streams at index ``i``,
and its time is the inverse of the activity CDF at ``(i + u) / n`` (stratified sampling).
Times therefore increase with ``i``: chunks come out already in time order, and a chunk
boundary falls at the same instant whatever the chunk size.

Most background rows are recipients' users reading the tax information they received
(``access``); the rest are individual IRS disclosures to the same recipients over their
usual channel. Bulk transfers, criminal requests and scenarios are built elsewhere.

A recipient reads only data it holds: once it has logged as many disposals of a standing
request's batches as receipts (all destroyed, e.g. while an agreement is suspended or when
a small output thins the monthly schedule past the disposal clause), its reads under that
request stop until the next batch arrives (``hold_from``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from dwatch.generate.identities import POPULATION, tin_series
from dwatch.generate.log import SpecialLog
from dwatch.generate.rand import Streams, uniform
from dwatch.generate.world import Agency, World, build_intensity, epoch

ACCESS_DESCRIPTIONS = [
    "Viewed taxpayer record",
    "Queried FTI by TIN",
    "Opened case file with federal return information",
    "Exported transcript to case workspace",
    "Viewed wage and income data",
]
LATE_SHARE = 0.001  # benign noise: entries logged hours after the fact
FAILURE_SHARE = 0.003
AUTHORITY_LOGGED_SHARE = 0.7  # recipients do not always note the authority on a read
_EVENT_TYPES = pl.Series(["access", "disclosure"], dtype=pl.Categorical)
_OUTCOMES = pl.Series(["success", "failure"], dtype=pl.Categorical)


class Background:
    def __init__(self, world: World, streams: Streams, n: int) -> None:
        self.world = world
        self.streams = streams
        self.n = max(int(n), 0)
        self.recipients: list[Agency] = list(world.recipients)
        rec = self.recipients
        tz_weights: dict[str, float] = {}
        for agency in rec:
            tz_weights[agency.tz] = tz_weights.get(agency.tz, 0.0) + agency.weight
        self.intensity = build_intensity(world, tz_weights)
        tzs = self.intensity.tzs
        # Recipient given time zone: one global cumulative array, time zone j in [j, j+1).
        cum, order = [], []
        for j, tz in enumerate(tzs):
            members = [i for i, a in enumerate(rec) if a.tz == tz]
            w = np.array([rec[i].weight for i in members], dtype=np.float64)
            c = np.cumsum(w) / w.sum()
            c[-1] = 1.0
            cum.extend(j + c)
            order.extend(members)
        self._rec_cum = np.asarray(cum)
        self._rec_order = np.asarray(order, dtype=np.int64)
        # Users of each recipient with heavy-ish but bounded differences in activity.
        user_cum, actor, role, rec_of_user = [], [], [], []
        for r, agency in enumerate(rec):
            idx = np.arange(len(agency.users), dtype=np.uint64) + np.uint64(r * 100_000)
            w = np.exp(0.5 * _normal(uniform(streams.key("user-weight"), idx)))
            c = np.cumsum(w) / w.sum()
            c[-1] = 1.0
            user_cum.extend(r + c)
            for uid, urole in agency.users:
                actor.append(uid)
                role.append(urole)
                rec_of_user.append(r)
        self._user_cum = np.asarray(user_cum)
        irs = world.discloser.users
        self._n_users = len(actor)
        self._n_irs = len(irs)
        # Recipients' users first, then the discloser's staff (who log disclosures).
        self._actor = pl.Series(actor + [u for u, _ in irs], dtype=pl.Categorical)
        self._role = pl.Series(role + [r for _, r in irs], dtype=pl.Categorical)
        self._discloser = pl.Series([world.discloser.code], dtype=pl.Categorical)
        self._null = pl.Series([None], dtype=pl.Categorical)
        self._descriptions = pl.Series(
            [*ACCESS_DESCRIPTIONS, "Late entry: recorded after the event",
             "Individual record disclosed on agency request"],
            dtype=pl.Categorical,
        )  # fmt: skip
        # Per-recipient lookups.
        flows = [world.flows[a.flow] for a in rec]
        self._disc_share = np.array([f.raw.get("disclosure_share", 0.0) for f in flows])
        self._code = pl.Series([a.code for a in rec], dtype=pl.Categorical)
        self._source = np.array([world.source_index(a.source_system) for a in rec], dtype=np.int32)
        self._purpose = pl.Series([f.purpose for f in flows], dtype=pl.Categorical)
        self._channel = pl.Series(
            [*(f.raw.get("individual_channel") for f in flows), None], dtype=pl.Categorical
        )
        # Each log has a habitual spelling of the citation and sometimes another.
        cites: list[str] = []
        self._cite_primary = np.zeros(len(rec), dtype=np.int64)
        self._cite_count = np.zeros(len(rec), dtype=np.int64)
        for r, f in enumerate(flows):
            self._cite_primary[r] = len(cites) + (r % len(f.citations))
            self._cite_count[r] = len(f.citations)
            cites.extend(f.citations)
        self._cite_offset = np.cumsum([0] + [len(f.citations) for f in flows[:-1]])
        self._cites = pl.Series([*cites, None], dtype=pl.Categorical)
        combos: list[list[str]] = []
        acc_off, acc_n, dis_off, dis_n = [], [], [], []
        for f in flows:
            acc_off.append(len(combos))
            acc_n.append(len(f.raw["access_data_elements"]))
            combos.extend(f.raw["access_data_elements"])
            dis = f.raw.get("disclosure_data_elements") or f.raw["access_data_elements"]
            dis_off.append(len(combos))
            dis_n.append(len(dis))
            combos.extend(dis)
        self._combos = pl.Series(combos, dtype=pl.List(pl.String))
        self._acc_off, self._acc_n = np.array(acc_off), np.array(acc_n)
        self._dis_off, self._dis_n = np.array(dis_off), np.array(dis_n)
        # Agreements: the one in force at each instant, and suspension windows.
        self._agr_switch = np.full(len(rec), np.iinfo(np.int64).max, dtype=np.int64)
        agr_old, agr_new = [], []
        self._sus_from = np.full(len(rec), np.iinfo(np.int64).max, dtype=np.int64)
        self._sus_to = np.full(len(rec), np.iinfo(np.int64).min, dtype=np.int64)
        for r, agency in enumerate(rec):
            ags = agency.agreements
            agr_old.append(ags[0].agreement_id if ags else None)
            agr_new.append(ags[-1].agreement_id if ags else None)
            if len(ags) > 1:
                self._agr_switch[r] = epoch(ags[1].valid_from)
            for ag in ags:
                if ag.suspended_from and ag.suspended_to:
                    self._sus_from[r] = epoch(ag.suspended_from)
                    self._sus_to[r] = epoch(ag.suspended_to + dt.timedelta(days=1))
        self._agreement_ids: list[str | None] = [*agr_old, *agr_new]
        self._agr = pl.Series([*agr_old, *agr_new, None], dtype=pl.Categorical)
        self._request = pl.Series(
            [f"R-{a}" if a else None for a in agr_old + agr_new], dtype=pl.Categorical
        )
        # Spans with nothing held, keyed (request slot << 32) + epoch second: none until
        # hold_from has read the schedule's receipts and disposals.
        self._empty_from = np.zeros(0, dtype=np.int64)
        self._empty_to = np.zeros(0, dtype=np.int64)

    # -- what each recipient holds -------------------------------------------------------

    def hold_from(self, log: SpecialLog) -> None:
        """Learn, from the hand-built receipts and disposals in the recipients' own logs, when
        a recipient holds nothing under the request its reads name: every batch received
        (within the window) destroyed and none received since. Before its first disposal a
        recipient holds what it received before the window."""
        # request slot k (as chunk draws it): recipient k % n, agreement before/after renewal
        # (both slots of a recipient with one agreement name the same request)
        n = len(self.recipients)
        slots_of: dict[tuple[str, str], list[int]] = {}
        for k, g in enumerate(self._agreement_ids):
            if g:
                slots_of.setdefault((self.recipients[k % n].code, f"R-{g}"), []).append(k)
        own_log = {a.code: self.world.source_index(a.source_system) for a in self.recipients}
        marks: dict[int, list[tuple[int, int]]] = {}
        for row in log.rows:
            kind = row["event_type"]
            if kind not in ("receipt", "disposal") or row["outcome"] != "success":
                continue
            slots = slots_of.get((row["recipient_agency"], row["request_id"]), [])
            if not slots or row["_src"] != own_log[row["recipient_agency"]]:
                continue
            for slot in slots:
                marks.setdefault(slot, []).append((row["_t"], 1 if kind == "receipt" else -1))
        starts, ends = [], []
        for slot, seq in marks.items():
            held, disposed, empty_since = 0, 0, None
            # a receipt and a disposal at the same second: the receipt first
            for t, step in sorted(seq, key=lambda m: (m[0], -m[1])):
                held += step
                disposed += step < 0
                if empty_since is not None and held > 0:
                    starts.append((slot << 32) + empty_since)
                    ends.append((slot << 32) + t)
                    empty_since = None
                elif empty_since is None and disposed and held <= 0:
                    empty_since = t
            if empty_since is not None:
                starts.append((slot << 32) + empty_since)
                ends.append((slot << 32) + np.iinfo(np.int32).max)
        order = np.argsort(starts)
        self._empty_from = np.asarray(starts, dtype=np.int64)[order]
        self._empty_to = np.asarray(ends, dtype=np.int64)[order]

    def _holds_nothing(self, slot: np.ndarray, t: np.ndarray) -> np.ndarray:
        if len(self._empty_from) == 0:
            return np.zeros(len(t), dtype=bool)
        q = (slot.astype(np.int64) << 32) + t
        i = np.searchsorted(self._empty_from, q, side="right") - 1
        return (i >= 0) & (q < self._empty_to[np.maximum(i, 0)])

    # -- expected volumes (used to size scenarios relative to normal traffic) ----------

    def expected_user_rate(self, code: str) -> float:
        """Expected background reads per user per day for one recipient."""
        r = [a.code for a in self.recipients].index(code)
        total_w = sum(a.weight for a in self.recipients)
        days = (self.world.end - self.world.start).days + 1
        share = self.recipients[r].weight / total_w * (1 - self._disc_share[r])
        return self.n * share / max(len(self.recipients[r].users), 1) / days

    def expected_daily_disclosures(self, code: str) -> float:
        r = [a.code for a in self.recipients].index(code)
        total_w = sum(a.weight for a in self.recipients)
        days = (self.world.end - self.world.start).days + 1
        return self.n * self.recipients[r].weight / total_w * self._disc_share[r] / days

    # -- time --------------------------------------------------------------------------

    def times(self, idx: np.ndarray) -> np.ndarray:
        """Epoch seconds of background events ``idx`` (non-decreasing in ``idx``)."""
        inten = self.intensity
        q = (idx.astype(np.float64) + self.streams.u("time", idx)) / max(self.n, 1)
        hour = np.searchsorted(inten.cdf, q, side="right")
        hour = np.minimum(hour, len(inten.cdf) - 1)
        prev = np.where(hour > 0, inten.cdf[np.maximum(hour - 1, 0)], 0.0)
        width = np.maximum(inten.cdf[hour] - prev, 1e-300)
        frac = np.clip((q - prev) / width, 0.0, 0.999999)
        return inten.start_epoch + hour.astype(np.int64) * 3600 + (frac * 3600).astype(np.int64)

    def boundary_time(self, i: int) -> int:
        """Time of background event ``i``; chunk boundaries are cut here."""
        if i >= self.n:
            return np.iinfo(np.int64).max
        return int(self.times(np.array([i], dtype=np.uint64))[0])

    # -- one chunk ---------------------------------------------------------------------

    def _draw(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Time, recipient, whether a disclosure (else a read), and request slot of events."""
        s = self.streams
        t = self.times(idx)
        inten = self.intensity
        hour = np.minimum((t - inten.start_epoch) // 3600, len(inten.cdf) - 1)
        tz_j = (inten.tz_cdf[hour] < s.u("tz", idx)[:, None]).sum(axis=1)
        tz_j = np.minimum(tz_j, len(inten.tzs) - 1)
        pos = np.searchsorted(self._rec_cum, tz_j + s.u("recipient", idx), side="right")
        pos = np.minimum(pos, len(self._rec_order) - 1)
        r = self._rec_order[pos]
        disclosure = s.u("kind", idx) < self._disc_share[r]
        suspended = (t >= self._sus_from[r]) & (t < self._sus_to[r])
        disclosure &= ~suspended  # no disclosures while the agreement is suspended
        renewed = t >= self._agr_switch[r]
        return t, r, disclosure, r + np.where(renewed, len(self.recipients), 0)

    def sized_for(self, kept: int, exact_up_to: int = 200_000) -> int:
        """How many background events to draw so that about ``kept`` (never more) remain
        once reads of data not held are left out. Counted on the draw itself (on an even
        sample of it past ``exact_up_to``); redrawing at another size moves every instant a
        little, so the size is corrected a few times."""
        if kept <= 0 or len(self._empty_from) == 0:
            return kept
        best, n = kept, kept
        for _ in range(4):
            self.n = n
            size = min(n, exact_up_to)
            idx = np.unique(np.linspace(0, n - 1, num=size).astype(np.uint64))
            t, _, disclosure, slot = self._draw(idx)
            remaining = round(
                n * (1.0 - float((~disclosure & self._holds_nothing(slot, t)).mean()))
            )
            if remaining <= kept:
                best = max(best, n)
            if remaining == kept:
                break
            n = max(kept, n + kept - remaining)
        return best

    def chunk(self, lo: int, hi: int) -> pl.DataFrame:
        s = self.streams
        idx = np.arange(lo, hi, dtype=np.uint64)
        t, r, disclosure, agr = self._draw(idx)
        src = np.where(disclosure, 0, self._source[r]).astype(np.int32)
        upos = np.searchsorted(self._user_cum, r + s.u("user", idx), side="right")
        upos = np.minimum(upos, self._n_users - 1)
        irs_user = (s.u("irs-user", idx) * self._n_irs).astype(np.int64)
        taxpayer = (s.u("taxpayer", idx) * POPULATION).astype(np.int64)
        u_el = s.u("elements", idx)
        combo = np.where(
            disclosure,
            self._dis_off[r] + (u_el * self._dis_n[r]).astype(np.int64),
            self._acc_off[r] + (u_el * self._acc_n[r]).astype(np.int64),
        )
        u_cite = s.u("citation", idx)
        alt = self._cite_offset[r] + (s.u("citation-alt", idx) * self._cite_count[r]).astype(
            np.int64
        )
        cite = np.where(u_cite < 0.85, self._cite_primary[r], alt)
        cite_logged = disclosure | (u_cite < AUTHORITY_LOGGED_SHARE * 0.85) | (u_cite >= 0.85)
        late = s.u("late", idx) < LATE_SHARE
        late_by = np.where(late, 3600 + (s.u("late-by", idx) * 47 * 3600).astype(np.int64), 0)
        failed = (~disclosure) & (s.u("outcome", idx) < FAILURE_SHARE)
        n_desc = len(ACCESS_DESCRIPTIONS)
        desc_i = (s.u("description", idx) * n_desc).astype(np.int64)
        desc_i = np.where(late_by > 0, n_desc, np.where(disclosure, n_desc + 1, desc_i))
        n_rec = len(self.recipients)
        n = len(idx)
        # Every text column is one gather from a small lookup table whose last entry is
        # null where the column is empty (e.g. no channel on a read).
        frame = pl.DataFrame(
            {
                "_t": t,
                "_kind": np.ones(n, dtype=np.int8),
                "_ord": idx.astype(np.int64),
                "_hook": np.full(n, -1, dtype=np.int64),
                "_src": src,
                "_late": late_by,
                "event_type": _EVENT_TYPES.gather(disclosure.astype(np.int64)),
                "disclosing_agency": self._discloser.gather(np.zeros(n, dtype=np.int64)),
                "recipient_agency": self._code.gather(r),
                "actor_id": self._actor.gather(np.where(disclosure, self._n_users + irs_user, upos)),
                "actor_role": self._role.gather(np.where(disclosure, self._n_users + irs_user, upos)),
                "request_id": self._request.gather(agr),
                "legal_authority": self._cites.gather(np.where(cite_logged, cite, len(self._cites) - 1)),
                "purpose": self._purpose.gather(r),
                "data_elements": self._combos.gather(combo),
                "record_count": np.ones(n, dtype=np.int64),
                "taxpayer_tin": tin_series(taxpayer),
                "channel": self._channel.gather(np.where(disclosure, r, n_rec)),
                "encrypted": disclosure,
                "agreement_id": self._agr.gather(np.where(disclosure, agr, 2 * n_rec)),
                "case_number": self._null.gather(np.zeros(n, dtype=np.int64)),
                "description": self._descriptions.gather(desc_i),
                "outcome": _OUTCOMES.gather(failed.astype(np.int64)),
            }
        )  # fmt: skip
        frame = frame.with_columns(pl.when(pl.col("encrypted")).then(True).alias("encrypted"))
        # A recipient reads only what it holds (hold_from); disclosures to it go on.
        idle = ~disclosure & self._holds_nothing(agr, t)
        return frame.filter(pl.Series(~idle)) if idle.any() else frame


def _normal(u: np.ndarray) -> np.ndarray:
    """Approximate standard normal from uniforms (logistic quantile, scaled)."""
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return np.log(u / (1 - u)) * 0.5513
