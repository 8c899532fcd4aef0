"""Cases (立案处置): the disposal loop from an alert or a citizen report to a closed case (issue 17).

A case is the fold of its append-only events (`twin.cases.model`), kept by `twin.cases.book.CaseBook` in the
alert store; time limits per category, priority and step (`twin.cases.limits`), the rules that open cases from
alerts (`twin.cases.rules`), the report categories (`twin.cases.services`), dispatch suggestions
(`twin.cases.dispatch`), citizen reports (`twin.cases.reports`) and the risk ledger (`twin.cases.ledger`).
Pure of the live service: it sees alerts, positions and times as plain values. docs/contract/cases.md.
"""
