"""A real Girder 5 server for the tests: its database is mongomock, its notifications fakeredis.

    python tests/girder_launcher.py --port 8080 --root /tmp/girder [--broker redis://127.0.0.1:6379/0]

serves ``girder.asgi:app`` (every installed Girder plugin: large_image, large_image_annotation,
slicer_cli_web, jobs, worker, histomicsui) with uvicorn on 127.0.0.1 only, and prints
``GIRDER READY <api url>`` once the API answers. The database is in memory and lost when the process
ends; ``--root`` holds the process's temporary files. Celery tasks (annotation ingestion, folder
copies) run in-process, or, with ``--broker``, in a girder_worker process that reads that broker.
"""

import argparse
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn

READY = "GIRDER READY"


def _patch_mongomock() -> None:
    """Make every pymongo client Girder opens one shared in-memory mongomock client.

    mongomock 4.3 lacks four things Girder 5 and its plugins use; each gets the smallest fix.
    """
    import mongomock
    import mongomock.codec_options
    import mongomock.collection
    import pymongo

    client = mongomock.MongoClient("mongodb://localhost:27017/girder")
    pymongo.MongoClient = lambda *args, **kwargs: client

    # (1) Girder puts CodecOptions(tz_aware=True, tzinfo=utc) on every collection: mongomock
    # refuses a custom tzinfo, and its tz_aware datetimes are UTC anyway. (2) large_image_annotation
    # reads elements with a custom document_class (a RawBSONDocument subclass): plain dicts serve.
    with_options = mongomock.collection.Collection.with_options

    def with_supported_options(self, codec_options=None, *args, **kwargs):
        if codec_options is not None:
            codec_options = mongomock.codec_options.CodecOptions(tz_aware=codec_options.tz_aware)
        return with_options(self, codec_options, *args, **kwargs)

    mongomock.collection.Collection.with_options = with_supported_options

    # (3) Girder counts cursors with the pymongo 3 Cursor.count(), which it re-adds to pymongo only.
    def count(self, with_limit_and_skip: bool = False) -> int:
        return len(self._compute_results(with_limit_and_skip))

    mongomock.collection.Cursor.count = count


def _patch_girder_cursor_types() -> None:
    """(4) Let Girder's REST layer recognise mongomock cursors (else ``Cannot call filtermodel``)."""
    import girder.api.rest
    import mongomock.collection
    import mongomock.command_cursor

    girder.api.rest._MONGO_CURSOR_TYPES += (
        mongomock.collection.Cursor, mongomock.command_cursor.CommandCursor)


def _patch_notifications() -> None:
    """Send Girder's notifications to an in-process fakeredis server instead of Redis."""
    import fakeredis

    import girder.notification

    server = fakeredis.FakeServer()
    sync_client = fakeredis.FakeRedis(server=server)
    girder.notification._redis_client_sync = lambda: sync_client
    girder.notification._redis_client_async = lambda: fakeredis.FakeAsyncRedis(server=server)


def _patch_missing_web_client() -> None:
    """(5) Let a plugin whose wheel lacks its web client build load (histomicsui 2.0.0a2 ships none):
    Girder hashes each registered css/js file at load time; files that are absent are left out."""
    import girder.plugin

    register = girder.plugin.registerPluginStaticContent

    def register_present(plugin, css, js, staticDir, tree):
        def present(files):
            return [name for name in files if (Path(staticDir) / name.lstrip("/")).is_file()]

        register(plugin, present(css), present(js), staticDir, tree)

    girder.plugin.registerPluginStaticContent = register_present


def _configure_environment(root: str, broker: str | None) -> None:
    """Girder and celery settings (read when girder is imported) and a private temporary folder.

    Without a broker, celery tasks run in the request; with one (``redis://127.0.0.1:PORT/0``) they go
    to it, for a separate girder_worker process to run, as in a DSA deployment."""
    if broker:
        os.environ["GIRDER_WORKER_TASK_ALWAYS_EAGER"] = "false"
        os.environ["GIRDER_WORKER_BROKER"] = broker
        os.environ["GIRDER_WORKER_BACKEND"] = broker
    else:
        os.environ["GIRDER_WORKER_TASK_ALWAYS_EAGER"] = "true"  # celery tasks run in the request
        os.environ["GIRDER_WORKER_BROKER"] = "memory://localhost/"  # never reach for an AMQP broker
        os.environ["GIRDER_WORKER_BACKEND"] = "cache+memory://"
    os.environ["GIRDER_SERVER_MODE"] = "testing"  # tracebacks in error responses
    os.environ["TMPDIR"] = root
    os.makedirs(root, exist_ok=True)


def _start_local_worker() -> None:
    """Consume celery's ``local`` queue in this process, as a DSA runs a worker beside Girder.

    Girder 5 sends the tasks that need its database (annotation ingestion, folder copies) to the
    ``local`` queue, for a worker with the server's database connection; the database here is this
    process's memory, so that worker is a thread of this process, reading the same broker."""
    from celery.worker import WorkController
    from girder_worker.app import app

    worker = WorkController(app=app, queues=["local"], pool_cls="threads", concurrency=2,
                            hostname="local@girder-test", loglevel="WARNING")
    threading.Thread(target=worker.start, name="local-celery-worker", daemon=True).start()


def _bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 only, bound before uvicorn starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def _announce_when_ready(api_url: str, timeout: float = 60.0) -> None:
    """Print the ready line once ``/system/version`` answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/system/version", timeout=2) as response:
                if response.status == 200:
                    print(f"{READY} {api_url}", flush=True)
                    return
        except OSError:
            time.sleep(0.1)


def serve(port: int, root: str, broker: str | None = None) -> None:
    """Patch, load Girder with every installed plugin, and serve it on 127.0.0.1:port."""
    _configure_environment(root, broker)
    _patch_mongomock()
    _patch_notifications()
    _patch_girder_cursor_types()
    _patch_missing_web_client()
    from girder.asgi import app  # creates the app and loads the plugins

    if broker:
        _start_local_worker()

    sock = _bind(port)
    api_url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    threading.Thread(target=_announce_when_ready, args=(api_url,), daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--port`` (0 = any free port), ``--root`` (temporary files), ``--broker``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free port)")
    parser.add_argument("--root", required=True, help="folder for the server's temporary files")
    parser.add_argument("--broker", help="celery broker for girder_worker jobs (default: run tasks in-process)")
    args = parser.parse_args(argv)
    serve(args.port, args.root, args.broker)


if __name__ == "__main__":
    main()
