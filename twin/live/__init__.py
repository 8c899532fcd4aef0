"""The live service: state fed by batches, the models run every tick, the core, the service loop.

Code outside this package reads the live twin only through `twin.live.query`.
"""
