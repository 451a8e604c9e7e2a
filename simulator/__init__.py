"""The simulated Shenzhen credit platform and trade feeds: a stand-in for the real platform.

It writes the raw tables whose contracts live in :mod:`features.tables` (the only thing it
imports from ``features``), plus the oracle (true PDs, default dates, injected faults).
"""
