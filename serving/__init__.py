"""The FastAPI service: scores, explanations, what-if and recourse, product matching, pricing,
consent, audit and the enterprise portal.
"""
