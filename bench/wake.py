"""`make bench`, part 4: how fast each function wakes, and how much memory the chat stream needs.

Each figure comes from fresh interpreters, as a cold Lambda container starts one, with the dev stage's settings:

1. Import of each handler module, as Lambda's Handler names it (derived from Chalice's own application graph, so
   a function added later is measured too), against ``import boto3`` alone, in pairs of fresh interpreters
   (boto3, then the module). Target: at most 1.1x. The median of ``WAKE_ROUNDS`` pairs.
2. The first invocation of a handler after its import (clients created, settings read, destinations loaded) and
   the second, on AWS emulated in the same process (moto), Connect emulated on 127.0.0.1
   (``scripts/emulated_connect.py``) and a webhook receiver on 127.0.0.1.
3. Peak memory (the process's maximum resident set) while ``WAKE_ITEMS`` (10,000) chat items pass through
   ``on_chat_message`` in one process, one SNS record per invocation as SNS delivers them, each delivered to a
   loopback receiver; against the same process's peak before the first item and a bare ``import boto3``.
   Target: under 128 MB.

4. The size of the function package (``deployment.zip``) and of the managed layer holding the dependencies, zipped
   and unzipped, from ``build/package`` when ``make package`` wrote it there, or else from a ``make package`` it
   runs (a minute or two: pip resolves ``requirements.txt``); it says which. Target: the function package under
   1 MB.

Reported, never asserted. Results go to .bench/wake.json; the README's cost per million items comes from them.
``python -m bench.wake imports`` measures the imports (1.) alone and writes nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench"
PACKAGE = ROOT / "build" / "package"
ROUNDS = int(os.environ.get("WAKE_ROUNDS", "5"))
ITEMS = int(os.environ.get("WAKE_ITEMS", "10000"))
STAGE = "dev"
EVENTS = ROOT / "tests" / "events"


def handlers() -> dict[str, str]:
    """Each function's Handler as ``chalice package`` writes it (``module.function``), by function name."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy import models
    from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder

    config = CLIFactory(str(ROOT)).create_config_obj(chalice_stage_name=STAGE)
    graph = DependencyBuilder().build_dependencies(ApplicationGraphBuilder().build(config, STAGE))
    return {r.resource_name: r.handler for r in graph if isinstance(r, models.LambdaFunction)}


def stage_environment(**extra: str) -> dict[str, str]:
    """What Lambda gives the dev stage's functions, with fake credentials and nothing of this shell's AWS."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **config["environment_variables"],
        **config["stages"][STAGE]["environment_variables"],
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
        **extra,
    }


def child(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m bench.wake ARGS`` in a fresh interpreter; its last line is JSON."""
    return _last_json([sys.executable, "-m", "bench.wake", *args], env or stage_environment())


def fresh_import(module: str) -> dict[str, Any]:
    """Import ``module`` in a bare interpreter (nothing imported before it but what ``-c`` needs)."""
    script = (
        "import time, json\n"
        "started = time.perf_counter()\n"
        f"import {module}\n"
        "ms = (time.perf_counter() - started) * 1000\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(json.dumps({'ms': ms, 'maxrss_mb': int(peak) / 1024}))\n"
    )
    return _last_json([sys.executable, "-c", script], stage_environment())


def _last_json(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[1:3]} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def served_aws() -> Iterator[dict[str, str]]:
    """``python -m bench.wake serve`` for the duration; yields the handlers' environment pointed at it."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.wake", "serve"],
        cwd=ROOT,
        env=stage_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield stage_environment(**json.loads(server.stdout.readline()))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


# -- in the child interpreters ----------------------------------------------------------------------------------


def maxrss_mb() -> float:
    """This process's peak resident set (VmHWM: unlike getrusage's ru_maxrss, not carried over from the parent
    through fork and exec)."""
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    return int(peak.split()[1]) / 1024


class Context:
    """Enough of Lambda's context for the handlers."""

    aws_request_id = "bench-request"
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:111122223333:function:bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _receiver() -> str:
    """A webhook receiver on 127.0.0.1 answering 204, in a thread of this process."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def child_serve() -> dict[str, Any]:
    """AWS for the handlers, in a process of its own so that it counts in none of their figures: moto and the
    emulated Connect on 127.0.0.1 (``scripts/local_aws.py``, with the chat of the contact fixtures open), the
    stage's queues, and a webhook receiver. Prints the variables that point the handlers at it; serves until its
    standard input closes."""
    import base64
    import secrets

    import boto3

    from scripts import local_aws

    environment, _moto, connect = local_aws.start()
    stage = local_aws.dev_stage_environment()
    for name in ("RETRY_QUEUE_URL", "TRANSCRIPT_QUEUE_URL", "RECONCILE_QUEUE_URL"):
        if stage.get(name):
            boto3.client("sqs").create_queue(QueueName=stage[name].rsplit("/", 1)[1])
    contact = json.loads((EVENTS / "contact" / "chat-initiated.json").read_text())["detail"]["contactId"]
    connect.open_chat(stage["CONNECT_INSTANCE_ID"], contact)
    destination = {
        "name": "crm",
        "url": _receiver(),
        "secrets": ["whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()],
        "allow_http": True,
        "allow_private_network": True,
    }
    OUT.mkdir(exist_ok=True)
    destinations = OUT / "wake-destinations.json"
    destinations.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": [destination]}))
    print(json.dumps({**environment, "RELAY_CONFIG_FILE": str(destinations)}), flush=True)
    sys.stdin.read()
    return {}


def _event(function: str, index: int = 0) -> dict[str, Any] | None:
    """A real-shaped event for a function, or None where the bench has none."""
    if function == "on_chat_message":
        from bench.run import sns_event

        return sns_event(index)
    if function == "on_contact_event":
        return json.loads((EVENTS / "contact" / "chat-initiated.json").read_text())  # type: ignore[no-any-return]
    if function == "start_streaming_from_flow":
        return json.loads((EVENTS / "flow-invocation-chat.json").read_text())  # type: ignore[no-any-return]
    if function == "api_handler":
        return {
            "resource": "/openapi.json",
            "path": "/openapi.json",
            "httpMethod": "GET",
            "headers": {"Host": "relay.example", "Accept": "application/json"},
            "multiValueHeaders": {},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {"resourcePath": "/openapi.json", "httpMethod": "GET", "stage": "dev"},
            "body": None,
            "isBase64Encoded": False,
        }
    return None


def _entry_point(handler: str) -> Any:
    module, attribute = handler.rsplit(".", 1)
    started = time.perf_counter()
    entry = getattr(importlib.import_module(module), attribute)
    return entry, (time.perf_counter() - started) * 1000


def child_first(function: str, handler: str) -> dict[str, Any]:
    """Import a handler and invoke it twice with a real-shaped event: the first invocation and a warm one."""
    event = _event(function)
    assert event is not None
    entry, _ = _entry_point(handler)
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        entry(event, Context())
        timings.append((time.perf_counter() - started) * 1000)
    return {"first_ms": timings[0], "second_ms": timings[1]}


def child_memory(handler: str, items: int) -> dict[str, Any]:
    """``items`` chat items through on_chat_message, one SNS record per invocation; the peak resident set."""
    from bench.run import sns_event

    entry, _ = _entry_point(handler)
    entry(sns_event(0), Context())
    before = maxrss_mb()
    started = time.perf_counter()
    for index in range(1, items + 1):
        entry(sns_event(index), Context())
    seconds = time.perf_counter() - started
    return {"before_mb": before, "peak_mb": maxrss_mb(), "ms_per_item": seconds * 1000 / items}


# -- the parent --------------------------------------------------------------------------------------------------


def _zip_mb(archive: Path) -> dict[str, float]:
    with zipfile.ZipFile(archive) as opened:
        unzipped = sum(entry.file_size for entry in opened.infolist())
    return {"zipped_mb": archive.stat().st_size / 1e6, "unzipped_mb": unzipped / 1e6}


def package_sizes() -> dict[str, Any]:
    """The function package and the layer of ``build/package``, built by ``make package`` first if it is not there
    (or was built before the dependencies were a layer)."""
    from scripts.lambda_runtime import layer_archives

    template = PACKAGE / "sam.json"
    if template.is_file() and layer_archives(json.loads(template.read_text()), PACKAGE):
        built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(template.stat().st_mtime))
        source = f"build/package, written by make package at {built}"
    else:
        make = shutil.which("make")
        assert make is not None, "the package sizes need make package"
        subprocess.run([make, "package"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        source = "make package, run by this bench"
    (layer,) = layer_archives(json.loads(template.read_text()), PACKAGE)
    sizes: dict[str, Any] = {"source": source, "function": _zip_mb(PACKAGE / "deployment.zip"), "layer": _zip_mb(layer)}
    print(
        f"package ({source}): function {sizes['function']['zipped_mb']:.2f} MB zipped"
        f" ({sizes['function']['unzipped_mb']:.2f} MB unzipped; target < 1 MB), layer"
        f" {sizes['layer']['zipped_mb']:.1f} MB zipped ({sizes['layer']['unzipped_mb']:.1f} MB unzipped)"
    )
    return sizes


def measure_imports(modules: list[str]) -> dict[str, Any]:
    """Each module's import against ``import boto3`` alone, in pairs of fresh interpreters; printed and returned."""
    # Each module right after a bare boto3, so a change of machine load hits both sides of a ratio alike.
    samples: dict[str, list[dict[str, Any]]] = {module: [] for module in modules}
    for _ in range(ROUNDS):
        for module, pairs in samples.items():
            pairs.append({"boto3": fresh_import("boto3"), "module": fresh_import(module)})
    everything = [pair["boto3"] for pairs in samples.values() for pair in pairs]
    boto3_ms = statistics.median(m["ms"] for m in everything)
    boto3_mb = statistics.median(m["maxrss_mb"] for m in everything)
    imports: dict[str, Any] = {"boto3_ms": boto3_ms, "boto3_maxrss_mb": boto3_mb, "modules": {}}
    print(f"import boto3 alone:                       {boto3_ms:7.1f} ms   {boto3_mb:5.1f} MB")
    for module, pairs in samples.items():
        ms = statistics.median(p["module"]["ms"] for p in pairs)
        ratio = statistics.median(p["module"]["ms"] / p["boto3"]["ms"] for p in pairs)
        mb = statistics.median(p["module"]["maxrss_mb"] for p in pairs)
        imports["modules"][module] = {"ms": ms, "ratio": ratio, "maxrss_mb": mb}
        print(f"import {module:34s} {ms:7.1f} ms   {mb:5.1f} MB   x{ratio:.2f} of boto3 (target <= 1.1)")
    return imports


def main(*, imports_only: bool = False) -> int:
    sys.path.insert(0, str(ROOT))
    functions = handlers()
    modules = sorted({handler.rsplit(".", 1)[0] for handler in functions.values()})
    print(f"connect-chat-relay wake bench: {ROUNDS} fresh interpreters each, {os.cpu_count()} cores", flush=True)
    imports = measure_imports(modules)
    if imports_only:
        return 0
    boto3_mb = imports["boto3_maxrss_mb"]

    first: dict[str, Any] = {}
    with served_aws() as environment:
        for function, handler in sorted(functions.items()):
            if _event(function) is None:
                continue
            runs = [child("first", function, handler, env=environment) for _ in range(3)]
            first[function] = {
                "first_ms": statistics.median(r["first_ms"] for r in runs),
                "second_ms": statistics.median(r["second_ms"] for r in runs),
            }
            print(
                f"first invocation {function:26s} {first[function]['first_ms']:7.1f} ms"
                f"   then {first[function]['second_ms']:6.1f} ms"
            )
        memory = child("memory", functions["on_chat_message"], str(ITEMS), env=environment)
    print(
        f"{ITEMS} items through on_chat_message: peak {memory['peak_mb']:.1f} MB (before the first item"
        f" {memory['before_mb']:.1f} MB; import boto3 alone {boto3_mb:.1f} MB; target < 128 MB),"
        f" {memory['ms_per_item']:.2f} ms per item"
    )
    package = package_sizes()
    results = {
        "imports": imports,
        "first_invocation": first,
        "memory": {"items": ITEMS, **memory},
        "package": package,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "wake.json").write_text(json.dumps(results, indent=2) + "\n")
    worst = max(m["ratio"] for m in imports["modules"].values())
    print(
        f"summary: slowest handler import x{worst:.2f} of boto3 (target <= 1.1), peak memory"
        f" {memory['peak_mb']:.0f} MB for {ITEMS} items (target < 128), function package"
        f" {package['function']['zipped_mb']:.2f} MB (target < 1) and a layer of {package['layer']['zipped_mb']:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "first":
        result = child_first(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "serve":
        result = child_serve()
    elif len(sys.argv) > 1 and sys.argv[1] == "memory":
        result = child_memory(sys.argv[2], int(sys.argv[3]))
    else:
        if {"-h", "--help"} & set(sys.argv[1:]):
            from bench import answer_help  # here, not at the top: the children's imports are what is measured

            answer_help(__doc__)
        sys.exit(main(imports_only=sys.argv[1:] == ["imports"]))
    print(json.dumps(result))
