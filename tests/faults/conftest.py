from tests.integration.conftest import celery_app, celery_worker  # noqa: F401  (the same real worker)
