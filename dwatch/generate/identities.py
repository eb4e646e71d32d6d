"""Fake taxpayers: identifier, name and address derived from a taxpayer number.

Fake TINs use SSN areas 666 and 000, which the SSA never issues, so nothing generated
can be a real person's number. The same taxpayer number always gives the same person.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dwatch.generate.rand import mix
from dwatch.generate.world import World

_PER_AREA = 99 * 9999  # groups 01..99 x serials 0001..9999
_AREAS = np.array([666, 0], dtype=np.int64)
POPULATION = _PER_AREA * len(_AREAS)


def tin_parts(taxpayer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = taxpayer.astype(np.int64) % POPULATION
    area = _AREAS[k // _PER_AREA]
    r = k % _PER_AREA
    return area, r // 9999 + 1, r % 9999 + 1


def tin_series(taxpayer: np.ndarray, name: str = "taxpayer_tin") -> pl.Series:
    area, group, serial = tin_parts(taxpayer)
    frame = pl.DataFrame({"a": area, "g": group, "s": serial})
    return frame.select(
        pl.concat_str(
            [
                pl.col("a").cast(pl.String).str.zfill(3),
                pl.col("g").cast(pl.String).str.zfill(2),
                pl.col("s").cast(pl.String).str.zfill(4),
            ],
            separator="-",
        ).alias(name)
    ).to_series()


def tin_text(taxpayer: int) -> str:
    area, group, serial = (int(x[0]) for x in tin_parts(np.array([taxpayer])))
    return f"{area:03d}-{group:02d}-{serial:04d}"


def _pick(values: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(idx % len(values))


def person_frame(world: World, taxpayer: np.ndarray) -> pl.DataFrame:
    """Name and a plausible street address for each taxpayer number."""
    names = world.raw["names"]
    k = taxpayer.astype(np.uint64)
    h = mix(k + np.uint64(0x51ED270B)).astype(np.int64) & 0x7FFFFFFFFFFF
    cities = names["cities"]
    city_idx = (h >> 20) % len(cities)
    first = _pick(names["first"], (h % 997).astype(np.int64))
    last = _pick(names["last"], ((h >> 10) % 991).astype(np.int64))
    street = _pick(names["streets"], ((h >> 30) % 983).astype(np.int64))
    number = ((h >> 8) % 9899 + 100).astype(np.int64)
    zip_tail = ((h >> 16) % 100).astype(np.int64)
    city = pl.Series([c[0] for c in cities]).gather(city_idx)
    state = pl.Series([c[1] for c in cities]).gather(city_idx)
    zip3 = pl.Series([c[2] for c in cities]).gather(city_idx)
    frame = pl.DataFrame(
        {"first": first, "last": last, "street": street, "number": number, "city": city,
         "state": state, "zip3": zip3, "zip_tail": zip_tail}
    )  # fmt: skip
    return frame.select(
        pl.concat_str([pl.col("first"), pl.col("last")], separator=" ").alias("supplied_name"),
        pl.concat_str(
            [
                pl.col("number").cast(pl.String),
                pl.lit(" "),
                pl.col("street"),
                pl.lit(", "),
                pl.col("city"),
                pl.lit(", "),
                pl.col("state"),
                pl.lit(" "),
                pl.col("zip3"),
                pl.col("zip_tail").cast(pl.String).str.zfill(2),
            ]
        ).alias("supplied_address"),
        pl.concat_str([pl.col("zip3"), pl.col("zip_tail").cast(pl.String).str.zfill(2)]).alias(
            "zip"
        ),
    )
