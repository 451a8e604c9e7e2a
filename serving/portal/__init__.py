"""The enterprise portal: server-rendered pages (Jinja2) and small vanilla JS over the JSON API.

No firm data is rendered into the HTML: each page's script calls the ``/v1`` API with the
firm's key, which lives in the browser's ``sessionStorage`` only (never in a URL or cookie).
"""
