"""MongoDB backups that are never silently broken, and point-in-time recovery.

``store`` (format, manifest, atomic files), ``create``, ``restore`` (and the oplog replay of
``oplog``), ``manage`` (list, verify, clean, metrics) and ``archive`` (the oplog archive).
"""
