"""Alerts: warning regions, their lifecycle, the CAP messages they become, delivery to units, the store.

Pure of the live service: it sees levels, cells and a context, never the twin's state objects.
"""
