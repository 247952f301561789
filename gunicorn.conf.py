"""Gunicorn settings for `gunicorn 'api:create_app()'` (read automatically from the working directory)."""

import os
import sys

from gunicorn import glogging

from messaging import logs
from messaging.errors import SettingsError
from messaging.settings import Settings

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
# Requests are short and mostly wait on PostgreSQL or Redis: a few threads per process.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# On SIGTERM, requests in flight get this long to finish (compose's grace period is 30 s).
graceful_timeout = 20
timeout = 30
keepalive = 5
accesslog = "-"
access_log_format = 'event=http_request method=%(m)s path="%(U)s" status=%(s)s duration_ms=%(M)s'
errorlog = "-"


class OneLineLogger(glogging.Logger):
    """gunicorn's logger, keeping each request one log line: a path or header with CR, LF, NUL, ESC
    or any other character that is not printable is written escaped, never raw."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.addFilter(logs.ONE_LINE)  # the error log quotes client text with gunicorn's own words

    def atoms(self, resp, req, environ, request_time):
        # Escaped before gunicorn escapes quotes: a backslash in a path cannot then unquote a field.
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: logs.escape(value) if isinstance(value, str) else value for name, value in atoms.items()}


logger_class = OneLineLogger


def on_starting(server):
    """Refuse to start on a bad setting, with one line naming it (not a traceback per worker)."""
    from api.auth import check_access, warn_if_open

    try:
        settings = Settings.from_env()
        check_access(settings)
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    # The app's own event lines (sending_started, ...); forked workers inherit the handler.
    logs.configure(settings.log_level)
    # Here, in the master, rather than in create_app: once per start, not once per worker.
    warn_if_open(settings)


def worker_exit(server, worker):
    """Close this worker's pool and clients once its requests are done."""
    from api import close_app

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        close_app(app)
