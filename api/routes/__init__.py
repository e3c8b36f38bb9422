"""Route modules: each exposes `router`; api.main includes every module here."""
