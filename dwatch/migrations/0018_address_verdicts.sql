-- Whether each supplied address lets the recipient find the person (dwatch/address.py),
-- judged once per distinct address text and kept: parsing costs a fraction of a
-- millisecond an address, too dear to pay per request item on every run, and a daily run
-- then judges only the addresses it has not seen. Keyed by the MD5 of the text
-- (md5_number), so the store holds no second copy of an address. `vocabulary` is the
-- fingerprint of the registry's placeholder words and of the judge's version that decided
-- the row; rows under another fingerprint are judged again by the next detect.
CREATE TABLE IF NOT EXISTS address_verdicts (
    address_key UHUGEINT NOT NULL,   -- md5_number(request_items.supplied_address)
    vocabulary VARCHAR NOT NULL,     -- AddressVocabulary.fingerprint
    usable BOOLEAN NOT NULL,
    form VARCHAR NOT NULL,           -- street | po_box | route | general_delivery | military | none
    reason VARCHAR NOT NULL,         -- "no street number and street name; only a ZIP"
    judged_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
