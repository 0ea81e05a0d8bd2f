"""Discord extensions (one per feature), loaded by ``bot.app``."""
