"""Server-side libraries of Slipstream: stores, the bus, the run state machine, settings.

These modules never run on their own: services wire them together.
"""
