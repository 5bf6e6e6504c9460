from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Caller(_message.Message):
    __slots__ = ("name", "plan_hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    plan_hash: str
    def __init__(self, name: _Optional[str] = ..., plan_hash: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("caller", "plan_json", "protocol", "has_capabilities", "train_samples", "valid_samples", "cpu_count", "memory_bytes", "gpu", "fx_version")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HAS_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALID_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    FX_VERSION_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    plan_json: bytes
    protocol: int
    has_capabilities: bool
    train_samples: int
    valid_samples: int
    cpu_count: int
    memory_bytes: int
    gpu: bool
    fx_version: str
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., plan_json: _Optional[bytes] = ..., protocol: _Optional[int] = ..., has_capabilities: _Optional[bool] = ..., train_samples: _Optional[int] = ..., valid_samples: _Optional[int] = ..., cpu_count: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpu: _Optional[bool] = ..., fx_version: _Optional[str] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("federation_id", "protocol", "round", "rounds_to_train", "finished")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TO_TRAIN_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    protocol: int
    round: int
    rounds_to_train: int
    finished: bool
    def __init__(self, federation_id: _Optional[str] = ..., protocol: _Optional[int] = ..., round: _Optional[int] = ..., rounds_to_train: _Optional[int] = ..., finished: _Optional[bool] = ...) -> None: ...

class GetTasksRequest(_message.Message):
    __slots__ = ("caller", "results_round", "results")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    RESULTS_ROUND_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    results_round: int
    results: _containers.RepeatedCompositeFieldContainer[TaskResult]
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., results_round: _Optional[int] = ..., results: _Optional[_Iterable[_Union[TaskResult, _Mapping]]] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task", "data_size", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    task: str
    data_size: int
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, task: _Optional[str] = ..., data_size: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetTasksResponse(_message.Message):
    __slots__ = ("action", "round", "tasks", "already_received", "rounds_to_train", "message", "not_counted")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[GetTasksResponse.Action]
        RUN: _ClassVar[GetTasksResponse.Action]
        WAIT: _ClassVar[GetTasksResponse.Action]
        MISSED: _ClassVar[GetTasksResponse.Action]
        FINISHED: _ClassVar[GetTasksResponse.Action]
        ABORTED: _ClassVar[GetTasksResponse.Action]
    ACTION_UNSPECIFIED: GetTasksResponse.Action
    RUN: GetTasksResponse.Action
    WAIT: GetTasksResponse.Action
    MISSED: GetTasksResponse.Action
    FINISHED: GetTasksResponse.Action
    ABORTED: GetTasksResponse.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    ALREADY_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TO_TRAIN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NOT_COUNTED_FIELD_NUMBER: _ClassVar[int]
    action: GetTasksResponse.Action
    round: int
    tasks: _containers.RepeatedScalarFieldContainer[str]
    already_received: _containers.RepeatedScalarFieldContainer[str]
    rounds_to_train: int
    message: str
    not_counted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, action: _Optional[_Union[GetTasksResponse.Action, str]] = ..., round: _Optional[int] = ..., tasks: _Optional[_Iterable[str]] = ..., already_received: _Optional[_Iterable[str]] = ..., rounds_to_train: _Optional[int] = ..., message: _Optional[str] = ..., not_counted: _Optional[_Iterable[str]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("caller", "round", "protocol")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    round: int
    protocol: int
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., round: _Optional[int] = ..., protocol: _Optional[int] = ...) -> None: ...

class TensorHeader(_message.Message):
    __slots__ = ("name", "dtype", "shape", "pipeline", "metadata", "nbytes", "crc32", "delta")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    pipeline: str
    metadata: _containers.ScalarMap[str, str]
    nbytes: int
    crc32: int
    delta: bool
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., pipeline: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., nbytes: _Optional[int] = ..., crc32: _Optional[int] = ..., delta: _Optional[bool] = ...) -> None: ...

class StreamTrailer(_message.Message):
    __slots__ = ("tensor_count", "payload_bytes")
    TENSOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    tensor_count: int
    payload_bytes: int
    def __init__(self, tensor_count: _Optional[int] = ..., payload_bytes: _Optional[int] = ...) -> None: ...

class ModelHeader(_message.Message):
    __slots__ = ("round", "tensor_count", "payload_bytes")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TENSOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    round: int
    tensor_count: int
    payload_bytes: int
    def __init__(self, round: _Optional[int] = ..., tensor_count: _Optional[int] = ..., payload_bytes: _Optional[int] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("model", "tensor", "data", "trailer", "batch")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    model: ModelHeader
    tensor: TensorHeader
    data: bytes
    trailer: StreamTrailer
    batch: DownloadBatch
    def __init__(self, model: _Optional[_Union[ModelHeader, _Mapping]] = ..., tensor: _Optional[_Union[TensorHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., trailer: _Optional[_Union[StreamTrailer, _Mapping]] = ..., batch: _Optional[_Union[DownloadBatch, _Mapping]] = ...) -> None: ...

class DownloadBatch(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[DownloadChunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[DownloadChunk, _Mapping]]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("caller", "round", "task", "data_size", "metrics", "tensor_count", "eager")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    EAGER_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    round: int
    task: str
    data_size: int
    metrics: _containers.ScalarMap[str, float]
    tensor_count: int
    eager: bool
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., round: _Optional[int] = ..., task: _Optional[str] = ..., data_size: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., tensor_count: _Optional[int] = ..., eager: _Optional[bool] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "tensor", "data", "trailer", "batch")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    tensor: TensorHeader
    data: bytes
    trailer: StreamTrailer
    batch: UploadBatch
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., tensor: _Optional[_Union[TensorHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., trailer: _Optional[_Union[StreamTrailer, _Mapping]] = ..., batch: _Optional[_Union[UploadBatch, _Mapping]] = ...) -> None: ...

class UploadBatch(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[UploadChunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[UploadChunk, _Mapping]]] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("outcome", "bytes_received", "message")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[UploadResponse.Outcome]
        ACCEPTED: _ClassVar[UploadResponse.Outcome]
        LATE: _ClassVar[UploadResponse.Outcome]
    OUTCOME_UNSPECIFIED: UploadResponse.Outcome
    ACCEPTED: UploadResponse.Outcome
    LATE: UploadResponse.Outcome
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    outcome: UploadResponse.Outcome
    bytes_received: int
    message: str
    def __init__(self, outcome: _Optional[_Union[UploadResponse.Outcome, str]] = ..., bytes_received: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("caller", "round", "task")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    round: int
    task: str
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., round: _Optional[int] = ..., task: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("round_open", "round")
    ROUND_OPEN_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    round_open: bool
    round: int
    def __init__(self, round_open: _Optional[bool] = ..., round: _Optional[int] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ("caller", "plan_json")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    plan_json: bytes
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., plan_json: _Optional[bytes] = ...) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("federation_id", "plan_hash", "plan_matches", "differing_keys", "round", "rounds_to_train", "finished")
    FEDERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_HASH_FIELD_NUMBER: _ClassVar[int]
    PLAN_MATCHES_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_KEYS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TO_TRAIN_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    federation_id: str
    plan_hash: str
    plan_matches: bool
    differing_keys: _containers.RepeatedScalarFieldContainer[str]
    round: int
    rounds_to_train: int
    finished: bool
    def __init__(self, federation_id: _Optional[str] = ..., plan_hash: _Optional[str] = ..., plan_matches: _Optional[bool] = ..., differing_keys: _Optional[_Iterable[str]] = ..., round: _Optional[int] = ..., rounds_to_train: _Optional[int] = ..., finished: _Optional[bool] = ...) -> None: ...

class SecAggSealed(_message.Message):
    __slots__ = ("peer", "data")
    PEER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    peer: str
    data: bytes
    def __init__(self, peer: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class SecAggAdvert(_message.Message):
    __slots__ = ("name", "c_public", "s_public", "signature", "cert_pem")
    NAME_FIELD_NUMBER: _ClassVar[int]
    C_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    S_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    name: str
    c_public: bytes
    s_public: bytes
    signature: bytes
    cert_pem: bytes
    def __init__(self, name: _Optional[str] = ..., c_public: _Optional[bytes] = ..., s_public: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., cert_pem: _Optional[bytes] = ...) -> None: ...

class SecAggRevealed(_message.Message):
    __slots__ = ("peer", "seed", "x", "share")
    PEER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    peer: str
    seed: bool
    x: int
    share: bytes
    def __init__(self, peer: _Optional[str] = ..., seed: _Optional[bool] = ..., x: _Optional[int] = ..., share: _Optional[bytes] = ...) -> None: ...

class SecAggRequest(_message.Message):
    __slots__ = ("caller", "round", "advert", "sealed", "masked", "masked_values", "modulus_bits", "revealed")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ADVERT_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    MASKED_VALUES_FIELD_NUMBER: _ClassVar[int]
    MODULUS_BITS_FIELD_NUMBER: _ClassVar[int]
    REVEALED_FIELD_NUMBER: _ClassVar[int]
    caller: Caller
    round: int
    advert: SecAggAdvert
    sealed: _containers.RepeatedCompositeFieldContainer[SecAggSealed]
    masked: bytes
    masked_values: int
    modulus_bits: int
    revealed: _containers.RepeatedCompositeFieldContainer[SecAggRevealed]
    def __init__(self, caller: _Optional[_Union[Caller, _Mapping]] = ..., round: _Optional[int] = ..., advert: _Optional[_Union[SecAggAdvert, _Mapping]] = ..., sealed: _Optional[_Iterable[_Union[SecAggSealed, _Mapping]]] = ..., masked: _Optional[bytes] = ..., masked_values: _Optional[int] = ..., modulus_bits: _Optional[int] = ..., revealed: _Optional[_Iterable[_Union[SecAggRevealed, _Mapping]]] = ...) -> None: ...

class SecAggReply(_message.Message):
    __slots__ = ("adverts", "sealed", "survivors", "message")
    ADVERTS_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    adverts: _containers.RepeatedCompositeFieldContainer[SecAggAdvert]
    sealed: _containers.RepeatedCompositeFieldContainer[SecAggSealed]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    message: str
    def __init__(self, adverts: _Optional[_Iterable[_Union[SecAggAdvert, _Mapping]]] = ..., sealed: _Optional[_Iterable[_Union[SecAggSealed, _Mapping]]] = ..., survivors: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ...) -> None: ...
