"""Partner systems: Open311 API keys, the requests they filed, and signed webhooks out."""
