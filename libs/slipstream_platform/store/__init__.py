"""Store modules: one per aggregate, each a set of async functions over a connection.

The caller owns the transaction. JSON columns go in and come out as JSON text.
"""
