"""The static district model: geodesy, the grid, CIM layers, BIM buildings, data sources and the twin file.

It changes when the city's base data or the grid changes, never on a live message. Nothing here imports
the live service, the alerting or the API.
"""
