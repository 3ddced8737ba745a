from scale_support import instances, postgres_url  # noqa: F401 - fixtures
