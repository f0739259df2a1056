"""Recognition points: the append-only ledger, its rules, leaderboards and the award runs."""
