"""Everything between the MQTT broker and a checked, columnar batch of observations.

Imports nothing from ``twin``, ``models`` or ``scenarios``.
"""
