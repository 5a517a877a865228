"""(Not named auth.py: the folder is on `google`'s namespace path, where it would shadow
google.auth.)

Google's own Python client libraries authenticating to lro the way they do to Google:

  REST  google.oauth2.credentials.Credentials(token=...) — its AuthorizedSession sends the bearer —
        under google-api-core's AbstractOperationsClient / OperationsRestTransport, over https.
  gRPC  google.auth.transport.grpc.secure_authorized_channel: TLS (grpc.ssl_channel_credentials
        with the deployment's CA) plus the access token as call credentials, under api_core's
        OperationsClient; and the same built by hand with grpc.composite_channel_credentials.

    tests/google/run.sh --script with_credentials.py --https https://localhost:PORT --grpc localhost:PORT \
        --ca ca.pem --admin-token T --read-token R --expired-token E

The api must run with TLS and an HS256 secret the tokens were signed with. The REST side trusts
the CA through REQUESTS_CA_BUNDLE, which the script sets itself (set for run.sh, it would make pip
distrust the package index while the virtualenv is made). Refusals must arrive as the clients' own exceptions
(Unauthorized/Unauthenticated, Forbidden/PermissionDenied) with lro's ErrorInfo reason.

Prints one line per call, then `with_credentials: N calls, all passed` and exits 0, or names each failed
check and exits 1.
"""

import argparse
import os
import sys
import traceback

import google.auth.exceptions
import google.auth.transport.grpc
import google.auth.transport.requests
import grpc
from google.api_core import exceptions as gexc
from google.api_core import operations_v1
from google.api_core.operations_v1.transports import OperationsRestTransport
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2  # noqa: F401  (registers google.rpc.ErrorInfo for Any)
from lro.v1 import jobs_pb2, jobs_pb2_grpc, operation_metadata_pb2  # noqa: F401

RPC_TIMEOUT = 10.0
# The URL bindings of google/longrunning/operations.proto (see conformance.py).
BINDINGS = {
    "google.longrunning.Operations.ListOperations": [
        {"method": "get", "uri": "/v1/{name=operations}"}
    ],
    "google.longrunning.Operations.GetOperation": [
        {"method": "get", "uri": "/v1/{name=operations/**}"}
    ],
    "google.longrunning.Operations.DeleteOperation": [
        {"method": "delete", "uri": "/v1/{name=operations/**}"}
    ],
    "google.longrunning.Operations.CancelOperation": [
        {"method": "post", "uri": "/v1/{name=operations/**}:cancel", "body": "*"}
    ],
}

calls = 0
failures = []


def check(what, fn):
    """Runs one client call (and its checks); records a failure instead of stopping."""
    global calls
    calls += 1
    try:
        result = fn()
        print(f"{what}: {result}")
    except Exception:  # noqa: BLE001  (every failure is reported, then the script exits 1)
        failures.append(what)
        print(f"{what}: FAILED\n{traceback.format_exc()}")


def refused(fn, exc_class, reason):
    """Calls fn, which must raise exc_class carrying this ErrorInfo reason."""
    try:
        fn()
    except exc_class as e:
        if e.reason != reason:
            raise AssertionError(f"reason {e.reason!r}, expected {reason!r}: {e!r}") from e
        return f"{type(e).__name__} {e.code} {e.reason}"
    raise AssertionError(f"expected {exc_class.__name__}, the call succeeded")


def _raises(fn, exc_class):
    try:
        fn()
    except exc_class as e:
        return f"{type(e).__name__}: {e}"
    raise AssertionError(f"expected {exc_class.__name__}, the call succeeded")


def _raise_for(resp):
    if resp.status_code >= 400:
        if resp.status_code == 401 and not resp.headers.get("www-authenticate", "").startswith(
            "Bearer"
        ):
            raise AssertionError(f"401 without a Bearer challenge: {resp.headers}")
        raise gexc.from_http_response(resp)


def rest_client(base, credentials):
    transport = OperationsRestTransport(
        host=base, credentials=credentials, http_options=BINDINGS
    )
    return operations_v1.AbstractOperationsClient(transport=transport)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--https", required=True, help="https://host:port of the REST listener")
    p.add_argument("--grpc", required=True, help="host:port of the gRPC listener")
    p.add_argument("--ca", required=True, help="PEM of the CA that signed the api's certificate")
    p.add_argument("--admin-token", required=True)
    p.add_argument("--read-token", required=True)
    p.add_argument("--expired-token", required=True)
    a = p.parse_args()
    os.environ["REQUESTS_CA_BUNDLE"] = a.ca

    # REST: Google's user-credentials class; its AuthorizedSession adds the bearer.
    admin = Credentials(token=a.admin_token)
    session = google.auth.transport.requests.AuthorizedSession(admin)
    resp = session.post(
        f"{a.https}/v1/jobs",
        json={"kind": "sleep", "input": {"duration": "60s"}},
        timeout=RPC_TIMEOUT,
    )
    resp.raise_for_status()
    name = resp.json()["name"]
    print(f"rest AuthorizedSession submit: {name}")

    rest_admin = rest_client(a.https, admin)
    rest_reader = rest_client(a.https, Credentials(token=a.read_token))
    rest_expired = rest_client(a.https, Credentials(token=a.expired_token))
    check(
        "rest get_operation with a token",
        lambda: rest_admin.get_operation(name, timeout=RPC_TIMEOUT).name,
    )
    check(
        "rest list_operations with a read-only token",
        lambda: [o.name for o in rest_reader.list_operations("operations", "")],
    )
    check(
        "rest cancel_operation with a read-only token",
        lambda: refused(
            lambda: rest_reader.cancel_operation(name, timeout=RPC_TIMEOUT),
            gexc.Forbidden,
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        ),
    )
    # On a 401 google-auth's AuthorizedSession refreshes the credentials and retries; a bare
    # token (or none) cannot refresh, so the transport's client raises google-auth's RefreshError
    # — as it would against Google. A session told not to refresh shows the 401 itself, read by
    # api_core's from_http_response as conformance.py reads its plain-HTTP calls.
    check(
        "rest client with an expired token",
        lambda: _raises(
            lambda: rest_expired.get_operation(name, timeout=RPC_TIMEOUT),
            google.auth.exceptions.RefreshError,
        ),
    )

    def status_of(credentials, reason, exc_class):
        s = google.auth.transport.requests.AuthorizedSession(
            credentials, refresh_status_codes=()
        )
        resp = s.get(f"{a.https}/v1/{name}", timeout=RPC_TIMEOUT)
        return refused(lambda: _raise_for(resp), exc_class, reason)

    check(
        "rest get without credentials",
        lambda: status_of(AnonymousCredentials(), "CREDENTIALS_MISSING", gexc.Unauthorized),
    )
    check(
        "rest get with an expired token",
        lambda: status_of(
            Credentials(token=a.expired_token), "ACCESS_TOKEN_EXPIRED", gexc.Unauthorized
        ),
    )
    check(
        "rest delete_operation with a read-only token",
        lambda: refused(
            lambda: rest_reader.delete_operation(name, timeout=RPC_TIMEOUT),
            gexc.Forbidden,
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        ),
    )

    # gRPC: TLS with the deployment's CA, the token as call credentials — google.auth's helper.
    with open(a.ca, "rb") as f:
        ca = f.read()
    ssl = grpc.ssl_channel_credentials(root_certificates=ca)
    request = google.auth.transport.requests.Request()
    admin_channel = google.auth.transport.grpc.secure_authorized_channel(
        admin, request, a.grpc, ssl_credentials=ssl
    )
    reader_channel = grpc.secure_channel(
        a.grpc,
        grpc.composite_channel_credentials(
            ssl, grpc.access_token_call_credentials(a.read_token)
        ),
    )
    expired_channel = grpc.secure_channel(
        a.grpc,
        grpc.composite_channel_credentials(
            ssl, grpc.access_token_call_credentials(a.expired_token)
        ),
    )
    bare_channel = grpc.secure_channel(a.grpc, ssl)
    grpc_admin = operations_v1.OperationsClient(admin_channel)
    grpc_reader = operations_v1.OperationsClient(reader_channel)
    grpc_expired = operations_v1.OperationsClient(expired_channel)
    grpc_bare = operations_v1.OperationsClient(bare_channel)

    def submit_over_grpc():
        job_input = struct_pb2.Struct()
        job_input.update({"duration": "60s"})
        op = jobs_pb2_grpc.JobsStub(admin_channel).SubmitJob(
            jobs_pb2.SubmitJobRequest(kind="sleep", input=job_input), timeout=RPC_TIMEOUT
        )
        return op.name

    check("grpc SubmitJob over an authorized TLS channel", submit_over_grpc)
    check(
        "grpc get_operation over an authorized TLS channel",
        lambda: grpc_admin.get_operation(name, timeout=RPC_TIMEOUT, retry=None).name,
    )
    check(
        "grpc get_operation with a read-only token",
        lambda: grpc_reader.get_operation(name, timeout=RPC_TIMEOUT, retry=None).name,
    )
    check(
        "grpc cancel_operation with a read-only token",
        lambda: refused(
            lambda: grpc_reader.cancel_operation(name, timeout=RPC_TIMEOUT, retry=None),
            gexc.PermissionDenied,
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        ),
    )
    check(
        "grpc get_operation without call credentials",
        lambda: refused(
            lambda: grpc_bare.get_operation(name, timeout=RPC_TIMEOUT, retry=None),
            gexc.Unauthenticated,
            "CREDENTIALS_MISSING",
        ),
    )
    check(
        "grpc get_operation with an expired token",
        lambda: refused(
            lambda: grpc_expired.get_operation(name, timeout=RPC_TIMEOUT, retry=None),
            gexc.Unauthenticated,
            "ACCESS_TOKEN_EXPIRED",
        ),
    )
    check(
        "grpc cancel_operation with a token",
        lambda: grpc_admin.cancel_operation(name, timeout=RPC_TIMEOUT, retry=None) or "ok",
    )
    check(
        "rest sees who cancelled",
        lambda: _cancelled_by(rest_admin, name),
    )

    if failures:
        print(f"with_credentials: {calls} calls, {len(failures)} failed: {', '.join(failures)}")
        sys.exit(1)
    print(f"with_credentials: {calls} calls, all passed")


def _cancelled_by(client, name):
    meta = operation_metadata_pb2.OperationMetadata()
    client.get_operation(name, timeout=RPC_TIMEOUT).metadata.Unpack(meta)
    if not meta.cancel_requested or meta.cancel_requested_by != "admin":
        raise AssertionError(f"cancel not recorded for admin: {meta}")
    return meta.cancel_requested_by


if __name__ == "__main__":
    main()
