"""The HTTP API (`catalogcap serve`): FastAPI app factory in `catalogcap.api.app`."""
