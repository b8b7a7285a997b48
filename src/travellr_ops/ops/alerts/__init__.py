"""Alerts: the monitor's samples turned into episodes, and the episodes into webhook messages.

``rules``: which component each metric speaks for, when a component is down or breaching, and
how the dependency map (``alerts.depends_on``) folds symptoms into their root cause.
``episodes``: the episodes in the shared store; a message only when one opens, is still open
after ``alerts.repeat_s`` (a reminder), or resolves. ``delivery``: the messages as Slack or
plain JSON, kept in the store until a webhook takes them. ``alerter``: what `monitor --alert`
and `monitor once --alert` call once per sample.
"""
