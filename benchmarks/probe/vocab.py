"""What the probe's logs are written in: addresses, citations, names, identifiers.

Written from real-world variety (USPS Publication 28 styles, agencies' own citation habits),
not from the project's generator. Each address carries the truth a mail carrier would give:
can the recipient locate the person with it?
"""

from __future__ import annotations

import random
import uuid

# (address as supplied, usable) - usable means a carrier could deliver to it: a street line
# with a house number, a PO box, a rural or highway-contract route box, a military box, or
# general delivery at a named post office. Odd street names are real streets.
USABLE_ADDRESSES: tuple[str, ...] = (
    "1420 Peachtree St NE Apt 5B, Atlanta, GA 30309",
    "PO Box 1187, Bethel, AK 99559",
    "P.O. Box 42, Kaunakakai HI 96748",
    "RR 2 Box 148, Lebanon, MO 65536",
    "Rural Route 1 Box 33A, Hysham, MT 59038",
    "HC 64 Box 30, Tierra Amarilla, NM 87575",
    "General Delivery, Tok, AK 99780",
    "Unit 12\n3300 Kalanianaole Hwy\nHilo HI 96720",
    "Apt 4C\n215 W 98th St\nNew York, NY 10025",
    "4417 Unknown Rd, Pinetop, AZ 85935",
    "210 Nowhere Rd, Athens, GA 30606",
    "18 Void Ave, Kenner, LA 70062",
    "7488 Calzada de la Fuente, San Diego, CA 92154 (Otay Mesa Detention Center)",
    "PSC 1234 Box 5678, APO AE 09012",
    "Urb Las Gladiolas, 150 Calle A, San Juan PR 00926",
    "N6W23370 Bluemound Rd, Waukesha, WI 53188",
    "W9381 County Road K, Hortonville, WI 54944",
    "123 1/2 Elm St, Ottumwa, IA 52501",
    "12B Harbor Rd, Vinalhaven, ME 04863",
    "1600 Pennsylvania Ave NW Ste 100, Washington, DC 20500",
    "5100 Rockhill Rd # 204, Kansas City, MO 64110",
    "3012 Hwy 61 N Lot 17, Tunica, MS 38676",
    "400 S 4th St Fl 3, Las Vegas NV 89101",
    "88-1520 Mamalahoa Hwy, Captain Cook, HI 96704",
    "1 Infinite Loop, Cupertino CA 95014",
    "2221 E Camelback Rd Unit 1004, Phoenix, AZ 85016",
    "609 Avenida Ponce de León, San Juan, PR 00917",
    "17 Rue Royale Apt B, New Orleans, LA 70130",
    "76 Main Street, Presque Isle, ME 04769",
    "PO Box 9, Supai AZ 86435",
)

# Genuinely unusable: placeholders in several languages, blanks, a ZIP or town alone, a
# facility with no street, general delivery with no post office, house number zero.
UNUSABLE_ADDRESSES: tuple[str, ...] = (
    "Failed to Provide",
    "Unknown",
    "NA NA",
    "N/A",
    "",
    "   ",
    "Desconocido",
    "Dirección desconocida",
    "Sin domicilio fijo",
    "Adresse inconnue",
    "Unbekannt",
    "Sconosciuto",
    "Không rõ địa chỉ",
    "住所不明",
    "Homeless",
    "Transient - no fixed abode",
    "85364",
    "Yuma, AZ 85364",
    "Krome North Service Processing Center",
    "General Delivery",
    "000 Unknown Rd",
    "Address on file",
    "See attached",
    "Refused",
    "XXX",
    "Same as above",
    "c/o ICE ERO",
    "TBD",
)

# Citation spellings per authority, as different offices write them (prose included).
CITATIONS: dict[str, tuple[str, ...]] = {
    "26 USC 6103(d)": (
        "Sec. 6103(d)(1)",
        "IRC §6103(d)(1)",
        "26 U.S.C. 6103(d)",
        "26 USC § 6103 (d)(1)",
        "Title 26, § 6103(d)",
    ),
    "26 USC 6103(i)(2)": (
        "IRC §6103(i)(2)",
        "26 U.S.C. § 6103(i)(2)",
        "Pursuant to 26 USC 6103(i)(2)",
        "I.R.C. 6103(i)(2)(A)",
        "Request under 26 U.S.C. 6103(i)(2)(A) (non-tax criminal)",
    ),
    "26 USC 6103(i)(1)": (
        "26 U.S.C. 6103(i)(1) (ex parte order)",
        "IRC §6103(i)(1)",
        "Sec. 6103(i)(1)(A)",
    ),
    "26 USC 6103(l)(1)": ("26 USC 6103(l)(1)", "§6103(l)(1)(A)", "IRC 6103(l)(1)"),
    "26 USC 6103(j)(1)": ("26 U.S.C. 6103(j)(1)(A)", "Sec. 6103(j)(1)", "IRC §6103(j)(1)"),
    "26 USC 6103(l)(6)": (
        "IRC 6103(l)(6)",
        "42 U.S.C. 653 / 26 U.S.C. 6103(l)(6)",
        "26 USC §6103(l)(6)(A)",
    ),
    "26 USC 6103(l)(7)": ("26 U.S.C. 6103(l)(7)", "IRC 6103(l)(7)(D)"),
    "5 USC 552a(b)(7)": ("5 USC 552a(b)(7)", "Privacy Act, 5 U.S.C. § 552a(b)(7)"),
}

CRIMINAL_STATUTES = (
    "18 U.S.C. 1956",
    "21 U.S.C. 841",
    "18 U.S.C. 1343",
    "18 U.S.C. 2339B",
    "18 U.S.C. 1028A",
)
CRIMINAL_REASONS = (
    "Subject of a money laundering investigation; income sources relevant to proceeds tracing",
    "Target of a narcotics distribution investigation; address needed to serve process",
    "Wire fraud scheme; return information establishes the subject's residence",
    "Identity theft ring; confirm address of record for search warrant",
)
GIVEN = ("Maria", "James", "Keoni", "Aiyana", "Nguyen Van", "Oluwaseun", "Guadalupe", "Wei",
         "Tomás", "Leilani", "Dmitri", "Fatima", "Hemi", "Carlos", "Sun-hee", "Precious")  # fmt: skip
FAMILY = ("Kahananui", "Garcia-Lopez", "O'Neill", "Tran", "Okafor", "Smith", "Yazzie",
          "Begay", "Rivera", "Nakamura", "Dubois", "Al-Hassan", "Kowalski", "Lee", "Mbeki")  # fmt: skip


def name(rng: random.Random) -> str:
    return f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}"


def tin(rng: random.Random) -> str:
    """A synthetic identifier in ITIN shape (9xx-7x-xxxx): never a real SSN."""
    return f"9{rng.randint(0, 99):02d}-{rng.randint(70, 88)}-{rng.randint(0, 9999):04d}"


def cite(rng: random.Random, authority: str) -> str:
    return rng.choice(CITATIONS[authority])


def uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
