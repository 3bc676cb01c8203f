"""Stage 4, report: `select` picks each method's representative checkpoint from the results store and writes
`selection.json`; tables, figures and the leaderboard read that file (and never the store directly)."""
