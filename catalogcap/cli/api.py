"""`catalogcap serve` (the HTTP API) and `catalogcap tokens create|list|revoke`."""

from __future__ import annotations

import errno
import ipaddress
import signal
import socket

import click

from catalogcap.cli.app import App, pass_app
from catalogcap.errors import CatalogcapError

SCOPES = ("read", "review", "admin")  # catalogcap.api.tokens.SCOPES, without importing the API here


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(tokens)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", help="Address to bind (default: api.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: api.port, 8765).")
@click.option("--worker/--no-worker", default=None,
              help="Run a captioning worker here (default) or leave captioning to `catalogcap watch`.")
@click.option("--root", "roots", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A folder whose files clients may register by path (api.roots); repeatable.")
@pass_app
def serve(app: App, host: str | None, port: int | None, worker: bool | None, roots: tuple[str, ...]) -> None:
    """Serve the HTTP API: upload images, wait for captions, review, sync (docs at /docs).

    Shares the database and the queue with `watch`. Binds to loopback unless told otherwise;
    put TLS (a reverse proxy) in front before exposing it to a network."""
    try:
        import uvicorn

        from catalogcap.api.app import create_app
    except ImportError as exc:
        raise CatalogcapError(f"the HTTP API needs FastAPI and uvicorn ({exc.name} is missing):"
                              " pip install 'catalogcap[api]'") from None
    for key, value in (("api.host", host), ("api.port", port), ("api.worker", worker),
                       ("api.roots", list(roots) or None)):
        if value is not None:
            app.overrides[key] = value
    settings = app.settings
    # bound here, before anything is printed, and handed to the server: a busy port is one
    # line and exit 1, and no other process can take the port between the check and the start
    listener = _listen(settings.api.host, settings.api.port)
    if settings.api.worker:
        from catalogcap.captioner.model import resolve_model

        try:  # a worker without a model would only fail batch after batch: say so now, in one line
            resolve_model(settings.model, settings.model_revision)
        except BaseException:
            listener.close()
            raise
    from catalogcap.api.tokens import list_tokens

    if not list_tokens(app.engine, include_revoked=False):
        app.err.print("[yellow]no API tokens yet[/yellow]: every request but /healthz will get 401;"
                      " make one with `catalogcap tokens create --name NAME --scope read`")
    if not _is_loopback(settings.api.host):
        app.err.print(f"[yellow]warning[/yellow]: listening on {settings.api.host}, beyond this machine;"
                      " tokens travel in clear text unless TLS is in front")
    app.err.print(f"catalogcap API on http://{settings.api.host}:{settings.api.port} (docs at /docs);"
                  f" worker {'on' if settings.api.worker else 'off'}")
    api = create_app(settings, app.engine)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler it found:
    # with this one the process ends with exit code 0, as a stopped service should
    signal.signal(signal.SIGTERM, _exit_cleanly)
    config = uvicorn.Config(api, host=settings.api.host, port=settings.api.port, log_config=None,
                            server_header=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a CatalogcapError saying why it cannot be."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise CatalogcapError(f"cannot listen on {where}: {exc.strerror}; check --host (api.host)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = {
            errno.EADDRINUSE: "another program is listening there; stop it or choose a free port with --port"
                              " (api.port)",
            errno.EACCES: "ports below 1024 need privileges; choose a port above 1024 with --port (api.port)",
            errno.EADDRNOTAVAIL: "that address is not one of this machine's; check --host (api.host)",
        }.get(exc.errno or 0, "check --host and --port (api.host, api.port)")
        raise CatalogcapError(f"cannot listen on {where}: {exc.strerror or exc}; {hint}") from None
    return sock


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@click.group()
def tokens() -> None:
    """Bearer tokens of the HTTP API (stored hashed; the secret is shown once)."""


@tokens.command("create")
@click.option("--name", required=True, help="Who or what uses it, e.g. shop-backend.")
@click.option("--scope", type=click.Choice(SCOPES), default="read", show_default=True,
              help="read: GETs; review: also upload and decide; admin: also register server paths.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def tokens_create(app: App, name: str, scope: str, as_json: bool) -> None:
    """Make a token and print it once; only its hash is kept."""
    from catalogcap.api.tokens import create_token

    new = create_token(app.engine, name, scope)
    if as_json:
        app.json({"id": new.token.id, "name": new.token.name, "scope": new.token.scope, "token": new.secret})
        return
    app.err.print(f"token {new.token.id} ({new.token.name}, scope {scope}); copy it now, it is not shown again:")
    click.echo(new.secret)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app
def tokens_list(app: App, as_json: bool) -> None:
    """Tokens with their scope and last use (never the secret)."""
    from catalogcap.api.tokens import list_tokens

    rows = list_tokens(app.engine)
    if as_json:
        app.json([{"id": t.id, "name": t.name, "scope": t.scope, "created_at": t.created_at.isoformat(),
                   "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                   "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None} for t in rows])
        return
    app.table(("id", "name", "scope", "created", "last used", "state"),
              [(t.id, t.name, t.scope, f"{t.created_at:%Y-%m-%d %H:%M}",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                "revoked" if t.revoked_at else "live") for t in rows],
              title=f"{len(rows)} tokens")


@tokens.command("revoke")
@click.argument("token")
@pass_app
def tokens_revoke(app: App, token: str) -> None:
    """Revoke TOKEN (its id, or its name when one live token has it); effective at once."""
    from catalogcap.api.tokens import revoke_token

    row = revoke_token(app.engine, token)
    app.console.print(f"token {row.id} ({row.name}) revoked")
