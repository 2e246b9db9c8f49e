"""The ``glee.v1`` protobuf messages and gRPC service plumbing, built at import from the .proto file.

Why not generated ``_pb2`` files: generated code pins the protobuf/grpcio versions it was made with and
goes stale silently when the .proto changes. Instead the bundled protoc of ``grpcio-tools`` compiles
``proto/glee/v1/glee.proto`` to a descriptor set once per process (a few ms), the descriptors go into
protobuf's default pool (so server reflection can serve them) and message classes, server handlers and
a client stub are derived from the descriptors. The .proto file stays the single source of truth.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

#: Trailing-metadata key of the API error code (``invalid_prompt``, ``session_not_found``...) that every
#: failed call carries next to its status, so gRPC clients can tell errors apart as REST clients do.
ERROR_CODE_KEY = "glee-error-code"

# The repository's proto/ folder, shipped inside the package as glee/proto (a symlink in the source tree).
PROTO_ROOT = Path(__file__).resolve().parents[1] / "proto"
PROTO_FILE = "glee/v1/glee.proto"


def _compile_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    from grpc_tools import protoc

    if not (PROTO_ROOT / PROTO_FILE).is_file():
        raise RuntimeError(f"gRPC API definition not found at {PROTO_ROOT / PROTO_FILE}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "glee.desc"
        code = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"--descriptor_set_out={out}", PROTO_FILE])
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on {PROTO_ROOT / PROTO_FILE}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _load_file_descriptor():
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(PROTO_FILE)
    except KeyError:
        for file_proto in _compile_descriptor_set().file:
            pool.Add(file_proto)
        return pool.FindFileByName(PROTO_FILE)


_FILE = _load_file_descriptor()
_SERVICE = _FILE.services_by_name["Glee"]
SERVICE_NAME: str = _SERVICE.full_name

#: Message classes by name, e.g. ``pb.DetectRequest(image=b"...")``.
pb = SimpleNamespace(
    **{name: message_factory.GetMessageClass(desc) for name, desc in _FILE.message_types_by_name.items()}
)

_SERVER_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
_CLIENT_FACTORIES = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


def _message_classes(method) -> tuple[Any, Any]:
    return (
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )


def method_attribute(rpc_name: str) -> str:
    """The servicer method serving an RPC: ``GetSession`` -> ``get_session``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc_name).lower()


def generic_handler(servicer: object) -> grpc.GenericRpcHandler:
    """Route every RPC of ``glee.v1.Glee`` to the servicer's snake_case method of the same name."""
    handlers = {}
    for method in _SERVICE.methods:
        request_cls, response_cls = _message_classes(method)
        factory = _SERVER_FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method_attribute(method.name)),
            request_deserializer=request_cls.FromString,
            response_serializer=response_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


class GleeStub:
    """Client stub: one multi-callable attribute per RPC (``stub.Detect(request)``, ``stub.Track(it)``)."""

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None:
        for method in _SERVICE.methods:
            request_cls, response_cls = _message_classes(method)
            kind = _CLIENT_FACTORIES[(method.client_streaming, method.server_streaming)]
            callable_ = getattr(channel, kind)(
                f"/{SERVICE_NAME}/{method.name}",
                request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString,
            )
            setattr(self, method.name, callable_)
