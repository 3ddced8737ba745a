"""The balance monitor behind `quotaledger watch` (SPEC §7).

Pure at the core, I/O at the edges:

    config, tomlsource, convert   the watch.toml file, refused with file:line: reason
    state                         the alert state machine (pure)
    forecast                      burn rate and "runs out in" (pure)
    messages                      the words of each notification (pure)
    history                       the SQLite state file: polls and alert records
    poll, tokens                  one poll through the client SDK; tokens kept secret
    notify                        Apprise delivery
    watcher                       rounds of polls, decisions, delivery; the schedule
    metrics, report, plot         Prometheus gauges, `status`/`history` output, charts
"""
