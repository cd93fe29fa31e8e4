"""A moto server factory for the tests: one process that has imported moto,
the patches of moto_catalogue.py and every service paymig calls, and forks
a ready server for each test that asks.

A fresh `moto_server` spends about three seconds of CPU importing moto's
service modules, building each service's Flask app, loading botocore's
models and (on the first DescribeVpcEndpointServices) importing some thirty
other services — every test paid that, twice over with its seed and its
first plan. A fork starts with all of it done.

Run as `python moto_zygote.py SOCKET IDLE_SECONDS`. Each connection to the
unix socket SOCKET sends the asking process's pid on a line and gets one
line back, `PORT PID`: a new moto server on 127.0.0.1:PORT, process PID
(the asker kills it when done, and it ends by itself once the asker is
gone; the factory never waits for its servers, the kernel reaps them). The factory exits
after IDLE_SECONDS without a request. State is never shared: each server is
a process of its own, forked before any request reached the factory's
copy of moto.
"""

import os
import random
import signal
import socket
import sys

os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "false")
os.environ.setdefault("MOTO_PORT", "0")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moto_catalogue  # noqa: E402

# The services paymig and its tests call, and a cheap read of each to load
# everything a first request loads (backends, Flask apps, botocore models).
WARM = {
    "ec2": ("Action=DescribeVpcs&Version=2016-11-15", "ec2"),
    "rds": ("Action=DescribeDBClusters&Version=2014-10-31", "rds"),
    "iam": ("Action=ListRoles&Version=2010-05-08", "iam"),
    "sts": ("Action=GetCallerIdentity&Version=2011-06-15", "sts"),
    "sns": ("Action=ListTopics&Version=2010-03-31", "sns"),
    "cloudwatch": ("Action=DescribeAlarms&Version=2010-08-01", "monitoring"),
    "elbv2": ("Action=DescribeLoadBalancers&Version=2015-12-01", "elasticloadbalancing"),
}
JSON_WARM = {
    "dynamodb": ("DynamoDB_20120810.ListTables", "dynamodb", "1.0"),
    "kms": ("TrentService.ListKeys", "kms", "1.1"),
    "ssm": ("AmazonSSM.DescribeParameters", "ssm", "1.1"),
    "logs": ("Logs_20140328.DescribeLogGroups", "logs", "1.1"),
}


def _auth(service):
    return (
        "AWS4-HMAC-SHA256 Credential=AKIAWARM/20260101/us-east-1/"
        f"{service}/aws4_request, SignedHeaders=host, Signature=0"
    )


def _app():
    sys.meta_path.insert(0, moto_catalogue._PatchOnImport())
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    return app


def _warm(app):
    from werkzeug.test import Client

    client = Client(app)
    for body, signing in WARM.values():
        client.post(
            "/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": _auth(signing)},
        )
    for target, signing, version in JSON_WARM.values():
        client.post(
            "/",
            data="{}",
            headers={
                "Content-Type": f"application/x-amz-json-{version}",
                "X-Amz-Target": target,
                "Authorization": _auth(signing),
            },
        )
    client.get("/2015-03-31/functions/", headers={"Authorization": _auth("lambda")})
    client.get("/", headers={"Authorization": _auth("s3"), "Host": "s3.amazonaws.com"})
    # Every VPC endpoint service moto knows: the first listing imports the
    # backends of some thirty services.
    for region in ("us-east-1", "us-west-2"):
        client.post(
            "/",
            data="Action=DescribeVpcEndpointServices&Version=2016-11-15",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": _auth("ec2").replace("us-east-1", region),
            },
        )


def _watch(owner):
    """Ends this server when the test process that asked for it is gone
    (a test binary that aborted never kills its servers)."""
    import threading
    import time

    def watch():
        while True:
            time.sleep(2)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True).start()


def _serve(app, conn):
    """In the forked child: a moto server of its own on a free port, for the
    process whose pid the asker sent."""
    from moto.moto_api._internal import mock_random
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    conn.settimeout(10)
    owner = int(conn.makefile().readline().strip() or 0)
    if owner > 0:
        _watch(owner)

    # Its request log goes nowhere (the harness never reads it).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    seed = os.urandom(16)
    random.seed(seed)
    mock_random.seed(seed)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    conn.sendall(f"{server.server_port} {os.getpid()}\n".encode())
    conn.close()
    server.serve_forever()


def main(path, idle):
    app = _app()
    _warm(app)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path + ".new")
    except FileNotFoundError:
        pass
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)
    ours = os.stat(path).st_ino
    listener.settimeout(idle)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                break
            if os.fork() == 0:
                listener.close()
                os.setsid()
                try:
                    _serve(app, conn)
                finally:
                    os._exit(0)
            conn.close()
    finally:
        # Unless another factory has taken the name since.
        try:
            if os.stat(path).st_ino == ours:
                os.unlink(path)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
