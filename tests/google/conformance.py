"""Drives lro with Google's own Python client libraries, over REST and gRPC, and checks that what
they see is Google's long-running operations API.

    tests/google/run.sh --http http://127.0.0.1:8080 --grpc 127.0.0.1:8081

The api and at least one worker must already be running, in a namespace with no operations but
the ones this script creates. Clients, all unmodified:

  gRPC  google.api_core.operations_v1.OperationsClient (get, list, cancel, delete); for a list with
        a page size (that client's list_operations has no page_size) the same stub method wrapped
        by google.api_core.gapic_v1.method.wrap_method and walked by api_core's GRPCIterator;
        google.longrunning.operations_pb2_grpc.OperationsStub.WaitOperation and the generated
        lro.v1 JobsStub.SubmitJob, both wrapped by gapic_v1.method.wrap_method so that errors
        become api_core exceptions.
  REST  google.api_core.operations_v1.AbstractOperationsClient over OperationsRestTransport
        (url_scheme "http", anonymous credentials) for get, list, cancel, delete. That transport's
        built-in URL bindings only fit `{parent}/operations/{id}` names (`**/operations/*`), so it
        is given the bindings of the upstream google/longrunning/operations.proto
        (`/v1/{name=operations/**}`, ...) first and its own after them, through its public
        `http_options` argument; a second client with the built-in bindings only is used for a
        parented operation. Submission and :wait (which the Google clients lack) are plain HTTP
        with requests; their errors go through google.api_core.exceptions.from_http_response.

Every REST response body the script sees (the Google transport's too, observed with a requests
response hook) is parsed with json_format.Parse(ignore_unknown_fields=False) as the message it
must be: Operation, ListOperationsResponse, google.protobuf.Empty, or lro.v1.Error for errors.

Prints one line per client call (a poll loop is one line), then
`conformance: N calls, all passed` and exits 0, or names each failed check and exits 1.
"""

import argparse
import datetime
import os
import sys
import time
import traceback
import uuid
from urllib.parse import urlsplit

import grpc
import requests
from google.api_core import exceptions as gexc
from google.api_core import gapic_v1, operation, operations_v1, page_iterator
from google.api_core.future import polling
from google.api_core.operations_v1.transports import OperationsRestTransport
from google.auth.credentials import AnonymousCredentials
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from google.rpc import code_pb2
from google.rpc import error_details_pb2  # noqa: F401  (registers google.rpc.ErrorInfo for Any)
from lro.v1 import error_pb2, jobs_pb2, jobs_pb2_grpc, operation_metadata_pb2

State = operation_metadata_pb2.State
METADATA_URL = "type.googleapis.com/lro.v1.OperationMetadata"
VALUE_URL = "type.googleapis.com/google.protobuf.Value"
ERROR_INFO_URL = "type.googleapis.com/google.rpc.ErrorInfo"
# The canonical google.rpc.Code -> HTTP status mapping (google/rpc/code.proto).
HTTP_STATUS = {
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
    code_pb2.UNAUTHENTICATED: 401,
}
DONE_STATES = {State.SUCCEEDED, State.FAILED, State.CANCELLED}
LIVE_STATES = {State.QUEUED, State.RUNNING, State.CANCELLING}
PARENT = "projects/gconf"  # where the parented operations go
RPC_TIMEOUT = 10.0  # seconds, for every single client call
POLL_DEADLINE = 20.0  # seconds, for a poll loop waiting for an observable state
POLL_INTERVAL = 0.05
TOTAL_DEADLINE = 50.0  # seconds; past it every further call fails at once

# The upstream google/longrunning/operations.proto bindings, then OperationsRestTransport's own.
HTTP_OPTIONS = {
    "google.longrunning.Operations.ListOperations": [
        {"method": "get", "uri": "/v1/{name=operations}"},
        {"method": "get", "uri": "/v1/{name=**}/operations"},
    ],
    "google.longrunning.Operations.GetOperation": [
        {"method": "get", "uri": "/v1/{name=operations/**}"},
        {"method": "get", "uri": "/v1/{name=**/operations/*}"},
    ],
    "google.longrunning.Operations.DeleteOperation": [
        {"method": "delete", "uri": "/v1/{name=operations/**}"},
        {"method": "delete", "uri": "/v1/{name=**/operations/*}"},
    ],
    "google.longrunning.Operations.CancelOperation": [
        {"method": "post", "uri": "/v1/{name=operations/**}:cancel", "body": "*"},
        {"method": "post", "uri": "/v1/{name=**/operations/*}:cancel", "body": "*"},
    ],
}


class CheckFailed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


def state_name(s):
    return State.Name(s)


def metadata_of(op):
    """Checks the shape every Operation must have and returns its unpacked metadata."""
    expect(op.name, f"operation without a name: {op}")
    expect(
        op.metadata.type_url == METADATA_URL,
        f"{op.name}: metadata @type {op.metadata.type_url!r}, want {METADATA_URL!r}",
    )
    meta = operation_metadata_pb2.OperationMetadata()
    expect(op.metadata.Unpack(meta), f"{op.name}: metadata does not unpack")
    result = op.WhichOneof("result")
    if op.done:
        expect(result is not None, f"{op.name}: done without error or response")
        expect(meta.state in DONE_STATES, f"{op.name}: done but state {state_name(meta.state)}")
        expect(meta.HasField("end_time"), f"{op.name}: done without metadata.end_time")
    else:
        expect(result is None, f"{op.name}: not done but has {result}")
        expect(meta.state in LIVE_STATES, f"{op.name}: not done but state {state_name(meta.state)}")
    if result == "response":
        expect(
            op.response.type_url == VALUE_URL,
            f"{op.name}: response @type {op.response.type_url!r}, want {VALUE_URL!r}",
        )
        expect(op.response.Unpack(struct_pb2.Value()), f"{op.name}: response does not unpack")
        expect(meta.state == State.SUCCEEDED, f"{op.name}: response but state {state_name(meta.state)}")
    if result == "error":
        want = State.CANCELLED if op.error.code == 1 else State.FAILED
        expect(meta.state == want, f"{op.name}: error {op.error.code} but state {state_name(meta.state)}")
    expect(meta.HasField("create_time"), f"{op.name}: metadata without create_time")
    return meta


def summary(op):
    meta = metadata_of(op)
    s = state_name(meta.state)
    if op.done:
        s = "done " + s
        if op.WhichOneof("result") == "error":
            s += f" error.code={op.error.code}"
        else:
            s += " response=Value"
    return s


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


class Run:
    """Counts calls and failed checks, and remembers every operation the script made."""

    def __init__(self):
        self.calls = 0
        self.failures = []
        self.kind = {}  # name -> kind of every operation created
        self.deleted = set()
        self.known_done = set()
        self.known_running = set()  # seen RUNNING and not yet cancelled by us
        self.to_cancel = set()  # sleeps that may still run
        self.slow_uncancellable = set()
        self.skipped = []  # checks not run: out of time
        self.deadline = time.monotonic() + TOTAL_DEADLINE

    def out_of_time(self):
        expect(time.monotonic() < self.deadline, f"out of time: the whole run may take {TOTAL_DEADLINE:.0f}s")


class Client:
    """What both transports offer; each call is counted and printed."""

    tag = "?"

    def __init__(self, run):
        self.run = run

    # Each returns what the Google client returns (Operation, list of Operations, None).
    def submit(self, kind, input, request_id="", timeout=None, parent=""):
        raise NotImplementedError

    def call(self, desc, fn, check=None, raises=None):
        """Calls fn; prints `tag desc -> result ok`. With raises, the call must raise that
        api_core exception type (returned); otherwise its result goes through check (which may
        return a short description)."""
        self.run.out_of_time()
        self.run.calls += 1
        try:
            result = fn()
        except gexc.GoogleAPICallError as e:
            self.after_call()
            if raises is not None and isinstance(e, raises):
                note = check(e) if check else None
                print(f"{self.tag:5} {desc} -> {type(e).__name__} ({describe_error(e)}){' ' + note if note else ''} ok")
                return e
            print(f"{self.tag:5} {desc} -> {type(e).__name__}: {e} FAIL")
            raise CheckFailed(f"{desc}: unexpected {type(e).__name__}: {e}") from e
        self.after_call()
        if raises is not None:
            print(f"{self.tag:5} {desc} -> returned {short(result)} FAIL")
            raise CheckFailed(f"{desc}: returned {short(result)}, want {raises.__name__}")
        try:
            note = check(result) if check else short(result)
        except CheckFailed:
            print(f"{self.tag:5} {desc} -> {short(result)} FAIL")
            raise
        print(f"{self.tag:5} {desc} -> {note} ok")
        return result

    def after_call(self):
        pass

    def poll(self, name, pred, what):
        """get_operation until pred(op, meta); one printed line for the whole loop."""
        deadline = time.monotonic() + POLL_DEADLINE
        n = 0
        while True:
            n += 1
            self.run.calls += 1
            try:
                op = self.get(name)
            finally:
                self.after_call()
            meta = metadata_of(op)
            if pred(op, meta):
                print(f"{self.tag:5} get_operation({name}) x{n} until {what} -> {summary(op)} ok")
                return op, meta
            self.run.out_of_time()
            if time.monotonic() > deadline:
                print(f"{self.tag:5} get_operation({name}) x{n} until {what} -> still {summary(op)} FAIL")
                raise CheckFailed(f"{name} not {what} after {POLL_DEADLINE}s: {summary(op)}")
            time.sleep(POLL_INTERVAL)


def short(x):
    if isinstance(x, operations_pb2.Operation):
        return summary(x)
    if x is None:
        return "None"
    if isinstance(x, tuple) and len(x) == 2:
        return f"{len(x[0])} ops in {x[1]} pages"
    return type(x).__name__


def describe_error(e):
    if e.reason is None and e.domain is None:
        return f"code {e.code}"
    return f"reason={e.reason} domain={e.domain}"


class GrpcClient(Client):
    tag = "grpc"

    def __init__(self, run, addr):
        super().__init__(run)
        self.channel = grpc.insecure_channel(addr, options=[("grpc.enable_http_proxy", 0)])
        self.ops = operations_v1.OperationsClient(self.channel)
        stub = operations_pb2_grpc.OperationsStub(self.channel)
        self._list_paged = gapic_v1.method.wrap_method(stub.ListOperations, default_timeout=RPC_TIMEOUT)
        self._wait = gapic_v1.method.wrap_method(stub.WaitOperation)
        self._submit = gapic_v1.method.wrap_method(
            jobs_pb2_grpc.JobsStub(self.channel).SubmitJob, default_timeout=RPC_TIMEOUT
        )

    def ops_for(self, name):
        return self.ops

    def submit(self, kind, input, request_id="", timeout=None, parent=""):
        req = jobs_pb2.SubmitJobRequest(parent=parent, kind=kind, input=struct(input), request_id=request_id)
        if timeout is not None:
            req.timeout.FromTimedelta(timeout)
        return self._submit(req)

    def get(self, name):
        return self.ops.get_operation(name, retry=None, timeout=RPC_TIMEOUT)

    def cancel(self, name):
        return self.ops.cancel_operation(name, retry=None, timeout=RPC_TIMEOUT)

    def delete(self, name):
        return self.ops.delete_operation(name, retry=None, timeout=RPC_TIMEOUT)

    def wait(self, name, seconds):
        req = operations_pb2.WaitOperationRequest(name=name)
        req.timeout.FromNanoseconds(int(seconds * 1e9))
        return self._wait(req, timeout=seconds + RPC_TIMEOUT)

    def list(self, name, filter_, page_size=None):
        """All operations over all pages, and the number of pages."""
        if page_size is None:
            it = self.ops.list_operations(name, filter_, retry=None, timeout=RPC_TIMEOUT)
        else:
            it = page_iterator.GRPCIterator(
                client=None,
                method=self._list_paged,
                request=operations_pb2.ListOperationsRequest(name=name, filter=filter_, page_size=page_size),
                items_field="operations",
                request_token_field="page_token",
                response_token_field="next_page_token",
            )
        ops = []
        pages = 0
        for page in it.pages:
            pages += 1
            ops.extend(page)
        return ops, pages

    def close(self):
        self.channel.close()


class RestClient(Client):
    tag = "rest"

    def __init__(self, run, base):
        super().__init__(run)
        self.base = base.rstrip("/")
        host = urlsplit(self.base).netloc
        # url_scheme="http" alone is not enough: OperationsRestTransport does not pass it on to
        # its base class (google-api-core 2.44.0), which then defaults to https; a host that
        # carries its scheme is honoured.
        self.transport = OperationsRestTransport(
            host=f"http://{host}", credentials=AnonymousCredentials(), url_scheme="http", http_options=HTTP_OPTIONS
        )
        self.ops = operations_v1.AbstractOperationsClient(transport=self.transport)
        # Built-in bindings only: fits parented names.
        self.default_transport = OperationsRestTransport(
            host=f"http://{host}", credentials=AnonymousCredentials(), url_scheme="http"
        )
        self.default_ops = operations_v1.AbstractOperationsClient(transport=self.default_transport)
        self.http = requests.Session()
        self.seen = []  # responses not yet checked strictly
        self.parsed = {}  # message type -> count
        self.states = set()
        # Observation only: the transports' requests sessions report each response here.
        for s in (self.transport._session, self.default_transport._session, self.http):
            s.hooks["response"].append(self._observe)

    def _observe(self, resp, *args, **kwargs):
        self.seen.append(resp)

    def after_call(self):
        seen, self.seen = self.seen, []
        for resp in seen:
            self.strict(resp)

    def strict(self, resp):
        """Check 7: the body parses strictly as the message it must be."""
        req = resp.request
        path = urlsplit(req.url).path
        what = f"{req.method} {path} -> {resp.status_code}"
        ctype = resp.headers.get("content-type", "")
        expect(ctype.startswith("application/json"), f"{what}: content-type {ctype!r}")
        if resp.status_code >= 400:
            msg = error_pb2.Error()
        elif req.method == "DELETE" or path.endswith(":cancel"):
            msg = empty_pb2.Empty()
        elif req.method == "GET" and path.endswith("/operations"):
            msg = operations_pb2.ListOperationsResponse()
        else:
            msg = operations_pb2.Operation()
        try:
            json_format.Parse(resp.text, msg, ignore_unknown_fields=False)
        except (json_format.ParseError, TypeError, ValueError) as e:
            raise CheckFailed(
                f"strict JSON: {what}: body is not a {msg.DESCRIPTOR.full_name}: {e}; body {resp.text[:400]!r}"
            ) from e
        name = msg.DESCRIPTOR.full_name
        self.parsed[name] = self.parsed.get(name, 0) + 1
        if isinstance(msg, error_pb2.Error):
            err = msg.error
            expect(err.code == resp.status_code, f"{what}: error.code {err.code} in a {resp.status_code} answer")
            want_http = HTTP_STATUS.get(err.status)
            expect(
                want_http == resp.status_code,
                f"{what}: error.status {code_pb2.Code.Name(err.status)} goes with HTTP {want_http}",
            )
            expect(
                [d.type_url for d in err.details] == [ERROR_INFO_URL],
                f"{what}: error.details {[d.type_url for d in err.details]}, want one ErrorInfo",
            )
        ops = [msg] if isinstance(msg, operations_pb2.Operation) else list(getattr(msg, "operations", []))
        for op in ops:
            self.states.add(state_name(metadata_of(op).state))

    def _http(self, method, path, body=None):
        r = self.http.request(method, f"{self.base}/v1/{path}", json=body, timeout=RPC_TIMEOUT + 60)
        if r.status_code >= 400:
            raise gexc.from_http_response(r)
        return r

    def submit(self, kind, input, request_id="", timeout=None, parent=""):
        body = {"kind": kind, "input": input}
        if request_id:
            body["requestId"] = request_id
        if timeout is not None:
            body["timeout"] = f"{timeout.total_seconds()}s"
        r = self._http("POST", f"{parent}/jobs" if parent else "jobs", body)
        return json_format.Parse(r.text, operations_pb2.Operation(), ignore_unknown_fields=False)

    def ops_for(self, name):
        return self._client(name)

    def _client(self, name):
        return self.ops if name.startswith("operations/") or name == "operations" else self.default_ops

    def get(self, name):
        return self._client(name).get_operation(name, retry=None, timeout=RPC_TIMEOUT)

    def cancel(self, name):
        return self._client(name).cancel_operation(name, retry=None, timeout=RPC_TIMEOUT)

    def delete(self, name):
        return self._client(name).delete_operation(name, retry=None, timeout=RPC_TIMEOUT)

    def wait(self, name, seconds):
        r = self._http("POST", f"{name}:wait", {"timeout": f"{seconds}s"})
        return json_format.Parse(r.text, operations_pb2.Operation(), ignore_unknown_fields=False)

    def list(self, name, filter_, page_size=None):
        pager = self._client(name).list_operations(
            name, filter_, page_size=page_size, retry=None, timeout=RPC_TIMEOUT
        )
        ops = []
        pages = 0
        for resp in pager.pages:
            pages += 1
            ops.extend(resp.operations)
        return ops, pages

    def close(self):
        self.http.close()


def is_not_found(e):
    expect(e.reason == "OPERATION_NOT_FOUND", f"ErrorInfo.reason {e.reason!r}, want OPERATION_NOT_FOUND")
    expect(e.domain == "lro", f"ErrorInfo.domain {e.domain!r}, want 'lro'")


def has_reason(reason):
    def check(e):
        expect(e.reason == reason, f"ErrorInfo.reason {e.reason!r}, want {reason!r}")
        expect(e.domain == "lro", f"ErrorInfo.domain {e.domain!r}, want 'lro'")

    return check


def invalid_argument(c):
    """REST answers 400, which api_core maps to BadRequest (its parent class); gRPC answers
    INVALID_ARGUMENT, which it maps to InvalidArgument."""
    return gexc.BadRequest if c.tag == "rest" else gexc.InvalidArgument


def submitted(c, kind):
    def check(op):
        meta = metadata_of(op)
        expect(not op.done, f"{op.name}: a new operation is done")
        expect(meta.kind == kind, f"{op.name}: metadata.kind {meta.kind!r}, want {kind!r}")
        expect(op.name.startswith("operations/") or op.name.startswith(PARENT + "/operations/"), f"name {op.name!r}")
        c.run.kind[op.name] = kind
        return f"{op.name} {summary(op)}"

    return check


def check_noop(c):
    """1. noop job, WaitOperation until done; response is a google.protobuf.Value."""
    rid = f"gconf-{c.tag}-{uuid.uuid4()}"
    op = c.call(f"submit_job(noop, request_id={rid[:16]}…)", lambda: c.submit("noop", {}, request_id=rid), submitted(c, "noop"))
    c.call(
        "submit_job(noop, same request_id)",
        lambda: c.submit("noop", {}, request_id=rid),
        lambda o: (expect(o.name == op.name, f"got {o.name}, want {op.name}"), f"{o.name} (the same)")[1],
    )

    def done_with_value(o, request_id=""):
        expect(o.done, f"{o.name} not done after wait: {summary(o)}")
        expect(o.WhichOneof("result") == "response", f"{o.name}: {summary(o)}, want a response")
        v = struct_pb2.Value()
        expect(o.response.Unpack(v), "response does not unpack to Value")
        meta = metadata_of(o)
        expect(meta.request_id == request_id, f"metadata.request_id {meta.request_id!r}, want {request_id!r}")
        c.run.known_done.add(o.name)
        return f"{summary(o)} value={json_format.MessageToJson(v, indent=None)}"

    c.call(f"wait_operation({op.name}, 10s)", lambda: c.wait(op.name, 10), lambda o: done_with_value(o, rid))
    # a failing job: FAILED with the job's own status
    fop = c.call(
        "submit_job(fail code 13)", lambda: c.submit("fail", {"code": 13, "message": "boom"}), submitted(c, "fail")
    )

    def failed(o):
        expect(o.done and o.WhichOneof("result") == "error", f"{summary(o)}, want done with an error")
        expect(o.error.code == 13 and o.error.message == "boom", f"error {o.error.code} {o.error.message!r}, want 13 'boom'")
        expect(metadata_of(o).state == State.FAILED, f"state {state_name(metadata_of(o).state)}, want FAILED")
        c.run.known_done.add(o.name)
        return summary(o)

    c.call(f"wait_operation({fop.name}, 10s)", lambda: c.wait(fop.name, 10), failed)
    # a parented job, seen through the default bindings on REST
    pop = c.call(f"submit_job(noop, parent={PARENT})", lambda: c.submit("noop", {}, parent=PARENT), submitted(c, "noop"))
    expect(pop.name.startswith(PARENT + "/operations/"), f"parented name {pop.name!r}")
    c.call(f"wait_operation({pop.name}, 10s)", lambda: c.wait(pop.name, 10), done_with_value)
    c.call(f"get_operation({pop.name})", lambda: c.get(pop.name), lambda o: (expect(o.done, "not done"), summary(o))[1])
    return op.name, pop.name


def check_cancel(c):
    """2. sleep 60s, poll until RUNNING, cancel, poll until done: error.code 1, CANCELLED."""
    op = c.call("submit_job(sleep 60s)", lambda: c.submit("sleep", {"duration": "60s"}), submitted(c, "sleep"))
    c.run.to_cancel.add(op.name)
    c.poll(op.name, lambda o, m: m.state == State.RUNNING, "RUNNING")
    c.call(f"cancel_operation({op.name})", lambda: c.cancel(op.name), lambda r: (expect(r is None, f"{r!r}"), "None")[1])
    op2, meta = c.poll(op.name, lambda o, m: o.done, "done")
    expect(op2.WhichOneof("result") == "error" and op2.error.code == 1, f"{op.name}: {summary(op2)}, want error.code 1")
    expect(meta.state == State.CANCELLED, f"{op.name}: state {state_name(meta.state)}, want CANCELLED")
    expect(meta.cancel_requested and meta.HasField("cancel_time"), f"{op.name}: cancel_requested/cancel_time not set")
    c.run.to_cancel.discard(op.name)
    c.run.known_done.add(op.name)
    c.call(f"cancel_operation({op.name}) again (done)", lambda: c.cancel(op.name), lambda r: "None")
    c.call(
        f"get_operation({op.name})",
        lambda: c.get(op.name),
        lambda o: (expect(o.done and o.error.code == 1, "changed by a second cancel"), summary(o))[1],
    )
    return op.name


def check_short_wait(c):
    """5. wait 0.5 s on a running sleep: returns the operation, not done, after about 0.5 s."""
    op = c.call(
        "submit_job(sleep 60s, timeout 120s)",
        lambda: c.submit("sleep", {"duration": "60s"}, timeout=datetime.timedelta(seconds=120)),
        submitted(c, "sleep"),
    )
    c.run.to_cancel.add(op.name)
    meta = metadata_of(op)
    expect(meta.timeout.ToSeconds() == 120, f"metadata.timeout {meta.timeout.ToJsonString()}, want 120s")
    c.poll(op.name, lambda o, m: m.state == State.RUNNING, "RUNNING")
    c.run.known_running.add(op.name)
    t0 = time.monotonic()

    def not_done(o):
        took = time.monotonic() - t0
        expect(o.name == op.name, f"wait answered {o.name}")
        expect(not o.done, f"{o.name} done: {summary(o)}")
        expect(0.4 <= took < 5, f"wait(0.5s) took {took:.2f}s")
        return f"{summary(o)} done=False after {took:.2f}s"

    c.call(f"wait_operation({op.name}, 0.5s)", lambda: c.wait(op.name, 0.5), not_done)
    return op.name


def check_delete(c, name):
    """4. delete a done operation; then get is NotFound."""
    c.call(f"delete_operation({name})", lambda: c.delete(name), lambda r: (expect(r is None, f"{r!r}"), "None")[1])
    c.run.deleted.add(name)
    c.call(f"get_operation({name}) after delete", lambda: c.get(name), is_not_found, raises=gexc.NotFound)
    c.call(f"delete_operation({name}) again", lambda: c.delete(name), is_not_found, raises=gexc.NotFound)


def check_errors(c):
    """6. errors as the client's own exception types, with lro's ErrorInfo."""
    unknown = f"operations/{uuid.uuid4()}"
    c.call(f"get_operation({unknown}) unknown", lambda: c.get(unknown), is_not_found, raises=gexc.NotFound)
    c.call(f"cancel_operation({unknown}) unknown", lambda: c.cancel(unknown), is_not_found, raises=gexc.NotFound)
    c.call(f"wait_operation({unknown}, 1s) unknown", lambda: c.wait(unknown, 1), is_not_found, raises=gexc.NotFound)
    # not cancellable: short, so that it leaves the worker soon (it cannot be cancelled)
    op = c.call(
        "submit_job(uninterruptible 2s)", lambda: c.submit("uninterruptible", {"duration": "2s"}), submitted(c, "uninterruptible")
    )
    c.run.slow_uncancellable.add(op.name)
    c.call(
        f"cancel_operation({op.name}) uninterruptible",
        lambda: c.cancel(op.name),
        has_reason("NOT_CANCELLABLE"),
        raises=gexc.MethodNotImplemented,
    )
    c.call(
        f"get_operation({op.name})",
        lambda: c.get(op.name),
        lambda o: (expect(not metadata_of(o).cancel_requested, "cancel_requested set by a refused cancel"), summary(o))[1],
    )
    bad = "operations/bad!name"
    c.call(f"get_operation({bad})", lambda: c.get(bad), has_reason("INVALID_NAME"), raises=invalid_argument(c))
    c.call(
        'list_operations(operations, filter="nonsense")',
        lambda: c.list("operations", "nonsense"),
        has_reason("INVALID_FILTER"),
        raises=invalid_argument(c),
    )
    c.call(
        "submit_job(kind=nope)", lambda: c.submit("nope", {}), has_reason("UNKNOWN_KIND"), raises=invalid_argument(c)
    )


def check_future(c):
    """8. api_core's own LRO future (google.api_core.operation.from_gapic) over the operations
    client: result() of a noop, cancel() of a running sleep, then cancelled() and Cancelled."""
    poll_fast = polling.DEFAULT_POLLING.with_delay(initial=0.05, maximum=0.5, multiplier=1.5)

    def future(op):
        return operation.from_gapic(
            op, c.ops_for(op.name), struct_pb2.Value, metadata_type=operation_metadata_pb2.OperationMetadata,
            polling=poll_fast,
        )

    op = c.call("submit_job(noop)", lambda: c.submit("noop", {}), submitted(c, "noop"))
    f = future(op)

    def value(v):
        expect(isinstance(v, struct_pb2.Value), f"result {type(v).__name__}, want Value")
        meta = f.metadata
        expect(meta.state == State.SUCCEEDED, f"future.metadata.state {state_name(meta.state)}")
        c.run.known_done.add(op.name)
        return f"Value {json_format.MessageToJson(v, indent=None)}, metadata.state SUCCEEDED"

    c.call(f"Operation({op.name}).result(timeout=10)", lambda: f.result(timeout=10), value)
    op = c.call("submit_job(sleep 60s)", lambda: c.submit("sleep", {"duration": "60s"}), submitted(c, "sleep"))
    c.run.to_cancel.add(op.name)
    f = future(op)
    c.poll(op.name, lambda o, m: m.state == State.RUNNING, "RUNNING")
    c.call(f"Operation({op.name}).cancel()", f.cancel, lambda r: (expect(r is True, f"cancel() {r!r}"), "True")[1])
    c.call(
        f"Operation({op.name}).result(timeout=10)",
        lambda: f.result(timeout=10),
        lambda e: (expect(e.code == 499, f"code {e.code}"), "error.code=1")[1],
        raises=gexc.Cancelled,
    )
    c.call(f"Operation({op.name}).cancelled()", f.cancelled, lambda r: (expect(r is True, f"cancelled() {r!r}"), "True")[1])
    expect(f.metadata.state == State.CANCELLED, f"future.metadata.state {state_name(f.metadata.state)}")
    c.run.to_cancel.discard(op.name)
    c.run.known_done.add(op.name)


def check_list(c):
    """3. list with filters, page_size 1 over every page."""
    run = c.run
    live = {n for n in run.kind if n not in run.deleted and not n.startswith(PARENT + "/")}
    sleeps = {n for n in live if run.kind[n] == "sleep"}
    expect(len(sleeps) >= 2, f"only {len(sleeps)} sleeps to list")

    def exactly(want):
        def check(res):
            ops, pages = res
            got = [o.name for o in ops]
            for o in ops:
                metadata_of(o)
            expect(len(got) == len(set(got)), f"duplicates across pages: {got}")
            extra, missing = set(got) - want, want - set(got)
            expect(not extra and not missing, f"{len(got)} ops listed: unexpected {sorted(extra)}, missing {sorted(missing)}")
            return f"{len(got)} ops in {pages} pages"

        return check

    def paged(res):
        expect(res[1] >= len(sleeps), f"{res[1]} pages for {len(sleeps)} ops at page_size 1")
        return exactly(sleeps)(res)

    c.call(
        'list_operations(operations, filter=\'metadata.kind = "sleep"\', page_size=1)',
        lambda: c.list("operations", 'metadata.kind = "sleep"', page_size=1),
        paged,
    )
    c.call(
        'list_operations(operations, filter=\'metadata.kind = "sleep"\')',
        lambda: c.list("operations", 'metadata.kind = "sleep"'),
        exactly(sleeps),
    )
    done_sleeps = sleeps & run.known_done
    c.call(
        'list_operations(operations, filter=\'done = true AND metadata.kind = "sleep"\', page_size=1)',
        lambda: c.list("operations", 'done = true AND metadata.kind = "sleep"', page_size=1),
        exactly(done_sleeps),
    )
    running = sleeps & run.known_running
    c.call(
        'list_operations(operations, filter=\'metadata.state = RUNNING AND metadata.kind = "sleep"\')',
        lambda: c.list("operations", 'metadata.state = RUNNING AND metadata.kind = "sleep"'),
        exactly(running),
    )

    def done_true(res):
        ops, pages = res
        got = {o.name for o in ops}
        expect(all(o.done for o in ops), "a not-done operation in done = true")
        must = live & run.known_done
        may = live - run.known_running
        expect(must <= got <= may, f"unexpected {sorted(got - may)}, missing {sorted(must - got)}")
        return f"{len(got)} ops in {pages} pages"

    c.call("list_operations(operations, filter='done = true', page_size=2)", lambda: c.list("operations", "done = true", page_size=2), done_true)
    parented = {n for n in run.kind if n.startswith(PARENT + "/") and n not in run.deleted}
    c.call(f"list_operations({PARENT}, filter='')", lambda: c.list(PARENT, ""), exactly(parented))


def cancel_sleeps(c):
    for name in sorted(c.run.to_cancel):
        c.call(f"cancel_operation({name}) cleanup", lambda: c.cancel(name), lambda r: "None")
        c.run.known_running.discard(name)

        def cancelled(o):
            expect(o.done and o.error.code == 1, f"{summary(o)}, want done with error.code 1")
            c.run.known_done.add(o.name)
            return summary(o)

        c.call(f"wait_operation({name}, 10s)", lambda: c.wait(name, 10), cancelled)
        c.run.to_cancel.discard(name)


def section(run, c):
    def step(label, fn, *args):
        if time.monotonic() >= run.deadline:
            print(f"{c.tag:5} skipped check {label}: out of time")
            run.skipped.append(f"{c.tag} {label}")
            return None
        try:
            return fn(*args)
        except CheckFailed as e:
            run.failures.append(f"{c.tag} check {label}: {e}")
            print(f"{c.tag:5} FAILED check {label}: {e}")
        except Exception as e:  # a client exception nobody expected
            run.failures.append(f"{c.tag} check {label}: {type(e).__name__}: {e}")
            print(f"{c.tag:5} FAILED check {label}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3)
        return None

    names = step("1 (noop + wait)", check_noop, c)
    step("2 (cancel a running sleep)", check_cancel, c)
    step("5 (short wait on a running sleep)", check_short_wait, c)
    if names:
        step("4 (delete a done operation)", check_delete, c, names[0])
    step("6 (errors)", check_errors, c)
    step("8 (api_core Operation future)", check_future, c)
    step("3 (list, filters, pages)", check_list, c)
    step("cleanup (cancel running sleeps)", cancel_sleeps, c)
    if isinstance(c, RestClient) and not run.skipped:
        try:
            expect(not c.seen, "responses left unchecked")
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.parsed.items()))
            print(f"{c.tag:5} strict JSON: {sum(c.parsed.values())} bodies parsed ({kinds}); operation states seen: {', '.join(sorted(c.states))} ok")
            for want in ("google.longrunning.Operation", "google.longrunning.ListOperationsResponse", "google.protobuf.Empty", "lro.v1.Error"):
                expect(c.parsed.get(want), f"no {want} body seen")
        except CheckFailed as e:
            run.failures.append(f"rest check 7 (strict JSON): {e}")
            print(f"rest  FAILED check 7 (strict JSON): {e}")


def main():
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--http", required=True, help="REST base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--grpc", required=True, help="gRPC address, e.g. 127.0.0.1:8081")
    args = ap.parse_args()
    # Only 127.0.0.1, never through a proxy from the environment.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    run = Run()
    started = time.monotonic()
    clients = [RestClient(run, args.http), GrpcClient(run, args.grpc)]
    # Both ends must answer before anything is judged.
    try:
        requests.get(f"{args.http.rstrip('/')}/v1/operations", timeout=5)
        grpc.channel_ready_future(clients[1].channel).result(timeout=5)
    except (requests.RequestException, grpc.FutureTimeoutError) as e:
        print(f"conformance: cannot reach lro-api at --http {args.http} / --grpc {args.grpc}: {type(e).__name__} {e}")
        print("conformance: 0 calls, FAILED")
        sys.exit(1)
    for c in clients:
        # The strict JSON check runs inside every REST call; a body that fails it fails the check
        # that made the call.
        section(run, c)
    # Leave the workers idle, past the deadline too: sleeps a failed check left running are
    # cancelled (by either client), and the uninterruptible jobs, which cannot be, waited for.
    run.deadline = float("inf")
    for c in reversed(clients):
        for name in sorted(run.to_cancel):
            try:
                c.cancel(name)
                run.to_cancel.discard(name)
                print(f"{c.tag:5} cancel_operation({name}) cleanup -> None ok")
            except Exception as e:  # reported below
                print(f"{c.tag:5} cancel_operation({name}) cleanup -> {type(e).__name__}: {e}")
    if run.to_cancel:
        run.failures.append(f"cleanup: could not cancel {sorted(run.to_cancel)}")
    g = clients[1]
    for name in sorted(run.slow_uncancellable):
        try:
            g.call(f"wait_operation({name}, 10s) cleanup", lambda: g.wait(name, 10), lambda o: (expect(o.done, summary(o)), summary(o))[1])
        except Exception as e:
            run.failures.append(f"cleanup: {type(e).__name__}: {e}")
    for c in clients:
        c.close()
    took = time.monotonic() - started
    print(f"conformance: took {took:.1f}s")
    if run.skipped:
        run.failures.append(f"out of time ({TOTAL_DEADLINE:.0f}s): not run: {', '.join(run.skipped)}")
    if run.failures:
        for f in run.failures:
            print(f"conformance: FAILED {f}")
        print(f"conformance: {run.calls} calls, {len(run.failures)} checks FAILED")
        sys.exit(1)
    print(f"conformance: {run.calls} calls, all passed")


if __name__ == "__main__":
    main()
