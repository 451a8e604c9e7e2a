"""The trade-finance domain, free of HTTP: products, the rule engine, pricing, insurance quotes,
matching and bundles, regulator aggregates and the in-default rule.

``serving`` exposes it over HTTP; notebooks and batch jobs use it directly.
"""
