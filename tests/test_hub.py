"""push_folder drives the real huggingface_hub client against a tiny recording Hub on 127.0.0.1.

The server implements only what `HfApi.create_repo/create_branch/upload_folder` call in
huggingface_hub 2.4: repo create, branch create, README YAML validation, preupload (every file
answered `uploadMode: regular`, so no LFS/Xet transfer) and the NDJSON commit whose lines carry
each file inline in base64. No request leaves the machine.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
from huggingface_hub import HfApi, constants
from safetensors.torch import save_file

from hftk.errors import HftkError
from hftk.hub import check_push_access, push_folder, select_upload_files
from hftk.reporting.model_card import write_model_card

TOKEN = "hf_secretTESTtoken0123456789abcdef"
REPO_RE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<op>branch|preupload|commit)/(?P<rev>[^/]+)$")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class RecordingHub:
    """What the fake Hub saw, and how it should answer."""

    url: str = ""
    reject_auth: bool = False
    token_role: str = "write"  # what /api/whoami-v2 reports
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def find(self, op: str) -> list[Request]:
        """Requests of one kind: "create" (repo), "branch", "preupload" or "commit"."""
        if op == "create":
            return [r for r in self.requests if r.path == "/api/repos/create"]
        return [r for r in self.requests if (m := REPO_RE.match(r.path)) and m["op"] == op]


def make_handler(hub: RecordingHub):
    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # a stuck client connection cannot hang the test

        def log_message(self, *args):  # keep the server quiet: captured stderr is asserted on
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().strip(), 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._handle()

        def do_POST(self):
            self._handle()

        def _handle(self):
            path = urlsplit(self.path).path
            request = Request(self.command, path, {k.lower(): v for k, v in self.headers.items()}, self._body())
            with hub.lock:
                hub.requests.append(request)
            if hub.reject_auth:
                return self._send(401, {"error": "Invalid username or password."})
            if self.command == "POST" and path == "/api/repos/create":
                body = request.json()
                return self._send(200, {"url": f"{hub.url}/{body['organization']}/{body['name']}"})
            if self.command == "GET" and path == "/api/whoami-v2":
                orgs = [{"name": "acme"}]
                return self._send(200, {"name": "alice", "orgs": orgs, "auth": {"accessToken": {"role": hub.token_role}}})
            if self.command == "POST" and path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            match = REPO_RE.match(path)
            if self.command == "POST" and match and match["op"] == "branch":
                return self._send(200, {})
            if self.command == "POST" and match and match["op"] == "preupload":
                files = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                    for f in request.json()["files"]
                ]
                return self._send(200, {"files": files, "commitOid": "0" * 40})
            if self.command == "POST" and match and match["op"] == "commit":
                oid = "c0ffee" + "0" * 34
                return self._send(200, {"commitUrl": f"{hub.url}/{match['repo']}/commit/{oid}", "commitOid": oid})
            with hub.lock:
                hub.unexpected.append(f"{self.command} {path}")
            return self._send(404, {"error": f"not implemented by the test hub: {path}"})

    return Handler


@pytest.fixture
def no_internet(monkeypatch, tmp_path):
    """Lift HF_HUB_OFFLINE (CI sets it) while making sure nothing but 127.0.0.1 can be reached.

    huggingface_hub also does best-effort side requests to its default endpoint (e.g. the agent
    registry behind progress-bar defaults): a fresh cached copy stops that one, and any host
    lookup other than 127.0.0.1 is refused and recorded so the test fails if one is attempted.
    """
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    registry = tmp_path / "agent_harnesses.json"
    registry.write_text(json.dumps({"standardEnvVars": [], "harnesses": {}}))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(registry))
    refused: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", b"127.0.0.1"):
            refused.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network to {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield
    assert refused == [], f"code tried to reach the network: {refused}"


@pytest.fixture
def hub(no_internet, monkeypatch):
    state = RecordingHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # Anything huggingface_hub sends to "the Hub" by default lands here too (and counts as unexpected).
    monkeypatch.setattr(constants, "ENDPOINT", state.url)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert not state.unexpected, f"client called endpoints the test hub does not know: {state.unexpected}"


# What a saved run folder holds. The first group is what must reach the Hub by default.
UPLOADED = [
    "config.json",
    "configuration_hftk_bert.py",
    "generation_config.json",
    "loss.png",
    "metrics.json",
    "model.safetensors",
    "modeling_hftk_bert.py",
    "predictions.jsonl",
    "recipe.yaml",
    "samples/eval[1]*?.txt",  # glob characters in a name: uploaded as that exact file, not as a pattern
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "utils_hftk/attention.py",
    "vocab.txt",
]
# An Accelerate `save_state` checkpoint: uploaded whole with include_checkpoints (resume state)
CHECKPOINT_FILES = [
    "checkpoints/step-10/model.safetensors",
    "checkpoints/step-10/optimizer.bin",
    "checkpoints/step-10/random_states_0.pkl",
    "checkpoints/step-10/scheduler.bin",
    "checkpoints/step-10/trainer_state.json",
]
LOG_FILES = ["runs/events.out.tfevents.1700000000.host", "logs/train.log"]
NEVER = [
    "pytorch_model.bin",
    "training_args.pt",
    "state.pkl",
    "optimizer.bin",  # resume state outside a checkpoint folder is not resume state
    "checkpoints/step-10/pytorch_model.bin",  # pickled weights, even when checkpoints are included
    "checkpoints/.tmp-step-20/optimizer.bin",  # a checkpoint that never finished writing
    ".tmp-save-123/model.safetensors",
    ".tmp-README-abc.md",
    "__pycache__/modeling_hftk_bert.cpython-311.pyc",
]


def make_run(tmp_path: Path, *, readme: bool = False) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    config = {
        "model_type": "hftk_bert",
        "architectures": ["HftkBertForMaskedLM"],
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": 10,
        "auto_map": {"AutoModelForMaskedLM": "modeling_hftk_bert.HftkBertForMaskedLM"},
    }
    for name in UPLOADED + CHECKPOINT_FILES + LOG_FILES + NEVER:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}\n")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({"eval_loss": 1.5, "eval_accuracy": 0.5}))
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(folder / "model.safetensors"))
    if readme:
        (folder / "README.md").write_text("---\nlibrary_name: transformers\n---\n# my card\n")
    return folder


def commit_lines(request: Request) -> tuple[dict, dict[str, bytes]]:
    """(header, {path: content}) from a commit's NDJSON body."""
    lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
    header = next(line["value"] for line in lines if line["key"] == "header")
    files = {}
    for line in lines:
        assert line["key"] in ("header", "file"), f"unexpected commit op: {line['key']}"
        if line["key"] == "file":
            assert line["value"]["encoding"] == "base64"
            files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
    return header, files


def test_select_upload_files_keeps_model_and_drops_state_logs_pickles(tmp_path):
    folder = make_run(tmp_path, readme=True)
    assert select_upload_files(folder) == sorted(UPLOADED + ["README.md"])
    assert select_upload_files(folder, include_checkpoints=True) == sorted(UPLOADED + ["README.md"] + CHECKPOINT_FILES)
    assert select_upload_files(folder, include_logs=True) == sorted(UPLOADED + ["README.md"] + LOG_FILES)


def test_push_uploads_exactly_the_selected_files_to_a_private_branch(tmp_path, hub, capfd, caplog, monkeypatch):
    folder = make_run(tmp_path)  # no README.md: push writes the model card first
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    monkeypatch.setattr(constants, "HF_DEBUG", True)  # huggingface_hub logs every request as curl
    api = HfApi(endpoint=hub.url, token=TOKEN)

    url = push_folder(folder, "alice/tiny-bert", private=True, revision="exp-1", commit_message="First push", api=api)

    assert url == f"{hub.url}/alice/tiny-bert/commit/c0ffee" + "0" * 34
    [create] = hub.find("create")
    assert create.json() == {"name": "tiny-bert", "organization": "alice", "visibility": "private", "type": "model"}
    [branch] = hub.find("branch")
    assert branch.path == "/api/models/alice/tiny-bert/branch/exp-1"
    [preupload] = hub.find("preupload")
    assert preupload.path.endswith("/preupload/exp-1")
    [commit] = hub.find("commit")
    assert commit.path == "/api/models/alice/tiny-bert/commit/exp-1"
    # create before branch before commit
    assert hub.requests.index(create) < hub.requests.index(branch) < hub.requests.index(commit)

    header, files = commit_lines(commit)
    assert header["summary"] == "First push"
    assert sorted(files) == sorted(UPLOADED + ["README.md"])
    for name, content in files.items():
        assert content == (folder / name).read_bytes(), name
    assert files["README.md"].startswith(b"---\n") and b"trust_remote_code=True" in files["README.md"]
    assert b'model_id = "alice/tiny-bert"' in files["README.md"]

    # The token went where it must (every request's Authorization header) and nowhere else.
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests)
    out, err = capfd.readouterr()
    assert TOKEN not in out and TOKEN not in err
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "preupload" in logged  # the debug logs really were captured ...
    assert TOKEN not in logged  # ... and hold no token
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert not any(p.name.startswith(".tmp-README") for p in folder.iterdir() if p.name != ".tmp-README-abc.md")


def test_push_defaults_public_main_and_keeps_an_existing_card(tmp_path, hub):
    folder = make_run(tmp_path, readme=True)
    push_folder(folder, "alice/tiny-bert", api=HfApi(endpoint=hub.url, token=TOKEN))

    [create] = hub.find("create")
    assert "visibility" not in create.json()  # the Hub's (or org's) default visibility applies
    assert hub.find("branch") == []
    [commit] = hub.find("commit")
    assert commit.path == "/api/models/alice/tiny-bert/commit/main"
    header, files = commit_lines(commit)
    assert header["summary"] == "Upload model trained with hftk"
    assert files["README.md"] == b"---\nlibrary_name: transformers\n---\n# my card\n"
    assert sorted(files) == sorted(UPLOADED + ["README.md"])


def test_push_points_a_generated_card_at_the_repo(tmp_path, hub):
    folder = make_run(tmp_path)
    write_model_card(folder)  # as written at the end of training: loads from the local folder
    push_folder(folder, "alice/tiny-bert", api=HfApi(endpoint=hub.url, token=TOKEN))
    _, files = commit_lines(hub.find("commit")[0])
    assert b'model_id = "alice/tiny-bert"' in files["README.md"]
    assert str(folder).encode() not in files["README.md"]
    assert files["README.md"] == (folder / "README.md").read_bytes()


def test_push_with_checkpoints_and_logs_still_never_sends_pickled_weights(tmp_path, hub):
    folder = make_run(tmp_path, readme=True)
    push_folder(
        folder, "alice/tiny-bert", include_checkpoints=True, include_logs=True, api=HfApi(endpoint=hub.url, token=TOKEN)
    )
    _, files = commit_lines(hub.find("commit")[0])
    assert sorted(files) == sorted(UPLOADED + ["README.md"] + CHECKPOINT_FILES + LOG_FILES)


def test_rejected_token_says_how_to_log_in(tmp_path, hub):
    hub.reject_auth = True
    folder = make_run(tmp_path, readme=True)
    with pytest.raises(HftkError) as info:
        push_folder(folder, "alice/tiny-bert", api=HfApi(endpoint=hub.url, token=TOKEN))
    message = str(info.value)
    assert "hf auth login" in message and "HF_TOKEN" in message and "401" in message
    assert "\n" not in message and TOKEN not in message
    assert hub.find("commit") == []


def test_network_failure_is_one_line(tmp_path, no_internet):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = make_run(tmp_path, readme=True)
    with pytest.raises(HftkError, match=rf"cannot reach the Hub at http://127.0.0.1:{port} \(ConnectError\)") as info:
        push_folder(folder, "alice/tiny-bert", api=HfApi(endpoint=f"http://127.0.0.1:{port}", token=TOKEN))
    assert "\n" not in str(info.value) and TOKEN not in str(info.value)


def test_bad_input_fails_before_any_request(tmp_path, hub):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    with pytest.raises(HftkError, match="no such folder"):
        push_folder(tmp_path / "missing", "alice/x", api=api)
    folder = make_run(tmp_path, readme=True)
    for repo_id in ("alice/tiny/bert", "alice/tiny bert", "../tiny"):
        with pytest.raises(HftkError, match="invalid repo id"):
            push_folder(folder, repo_id, api=api)
    (folder / "model.safetensors").unlink()
    with pytest.raises(HftkError, match=r"no \*.safetensors or \*.onnx weights \(only pickled weights found"):
        push_folder(folder, "alice/x", api=api)
    (folder / "config.json").unlink()
    with pytest.raises(HftkError, match="no config.json"):
        push_folder(folder, "alice/x", api=api)
    assert hub.requests == []


def test_offline_mode_is_reported_not_hit(tmp_path, hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HftkError, match="HF_HUB_OFFLINE is set"):
        push_folder(make_run(tmp_path, readme=True), "alice/x", api=HfApi(endpoint=hub.url, token=TOKEN))
    assert hub.requests == []


# ---------------------------------------------------------------------------------------------
# --push-to-hub is checked before training: login, reachability, a repo the token may write
# ---------------------------------------------------------------------------------------------


def test_push_access_check_accepts_own_and_org_repos_with_one_request(hub):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    check_push_access("alice/tiny-bert", api=api)
    check_push_access("acme/tiny-bert", api=api)
    assert hub.paths() == ["/api/whoami-v2", "/api/whoami-v2"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub.requests)


@pytest.mark.parametrize(
    "repo_id, role, reject, needle",
    [
        ("bob/tiny-bert", "write", False, "logged in as alice"),
        ("alice/tiny-bert", "read", False, "read-only"),
        ("alice/tiny-bert", "write", True, "rejects the token"),
        ("alice/tiny bert", "write", False, "invalid repo id"),
    ],
)
def test_push_access_check_names_the_problem(hub, repo_id, role, reject, needle):
    hub.token_role, hub.reject_auth = role, reject
    with pytest.raises(HftkError, match=needle) as info:
        check_push_access(repo_id, api=HfApi(endpoint=hub.url, token=TOKEN))
    assert "\n" not in str(info.value) and TOKEN not in str(info.value)
    assert "commit" not in " ".join(hub.paths()) and hub.find("create") == []


def test_push_access_check_without_token_or_network(tmp_path, no_internet, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(HftkError, match="not logged in"):
        check_push_access("alice/x", api=HfApi(endpoint="http://127.0.0.1:9"))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HftkError, match="cannot reach the Hub"):
        check_push_access("alice/x", api=HfApi(endpoint=f"http://127.0.0.1:{port}", token=TOKEN))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HftkError, match="HF_HUB_OFFLINE"):
        check_push_access("alice/x", api=HfApi(endpoint=f"http://127.0.0.1:{port}", token=TOKEN))
