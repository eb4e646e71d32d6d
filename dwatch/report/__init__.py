"""Reports for compliance staff: cases, triage, suppressions, rendering and delivery.

Reads only the ``alerts`` table (plus the events, registry and validation results that
explain them). Alerts become cases (``cases``), analysts record decisions
(``triage_decisions``), allowlist entries hide known-good activity (``suppressions``), and
``build_report`` writes the same content as self-contained HTML, CSV and Markdown.
"""
