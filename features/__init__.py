"""Raw-table contracts, the platform simulator, ingestion, the feature catalog, point-in-time
feature snapshots and drift. Imports neither ``training`` nor ``serving``.
"""
