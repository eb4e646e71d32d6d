"""The accounting of disclosures per taxpayer, and the lists of taxpayers to notify.

- ``index``: the narrow side table ``accounting_keys`` (migrations 0024, 0043) that makes a
  lookup by pseudonym read a few row groups instead of scanning every event, kept per
  ingest batch; ``readback`` reads the events it names back by row id, checked.
- ``lookup``: every request, disclosure, receipt, access, redisclosure and disposal of one
  or many taxpayers' data, with the authority's status and the findings on each.
- ``affected``: the taxpayers a case, a court order or a finding says were harmed.
- ``write``: text, CSV, JSON and HTML, under the same safety rules as the report.

Identifiers come in only to be pseudonymised with the store's key; they are never stored
or written. The store cannot turn a pseudonym back into an identifier: the key holder
supplies the identifiers to match against (``affected``).
"""
