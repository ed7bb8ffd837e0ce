"""One adapter per external service; every call goes through ``calls.ExternalService``."""
