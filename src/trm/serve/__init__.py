"""`trm serve`: a local web page that shows a checkpoint solving, one supervision step at a time.

    models.py   the checkpoints on offer (found at start, loaded on first use), puzzle text <-> tokens
    stream.py   per-step events: grids, changed and wrong cells, q_halt, the PCA path of y
    app.py      the standard library's ThreadingHTTPServer, the JSON API, the streamed solve
    static/     the page: plain HTML, JavaScript and CSS (no build step, nothing fetched from the network)

Solving itself is trm.trusted's, the code `trm solve` runs: POST /api/solve returns what `trm solve --json`
prints. docs/serve.md has the API and what the page shows.
"""

from .app import Limits, make_server
from .models import Models, default_models_dir

__all__ = ["Limits", "Models", "default_models_dir", "make_server"]
