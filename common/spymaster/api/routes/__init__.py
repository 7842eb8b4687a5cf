"""The API's routes, one module per area: ``days``, ``query``, ``report`` (all under ``/v1``) and ``page``."""
