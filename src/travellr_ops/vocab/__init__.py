"""The words every group shares, each defined once: durations and times, verdicts and their
exit codes, percentiles, the backend's log formats, byte counts, file tails, report files."""
