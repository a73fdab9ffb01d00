"""Settings: the one place that reads the environment.

Everything else receives a `Settings` instance, so tests build their own with
`Settings(...)` or `dataclasses.replace(...)` instead of patching `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .environment import Environment, read_keys_file

# Re-exported: callers catch it as settings' own error.
from .environment import SettingsError as SettingsError
from .key_limits import KeyLimits

Provider = Literal["auto", "cuda", "cpu"]
Precision = Literal["auto", "fp32", "bf16", "int8"]
EngineName = Literal["auto", "openvino", "onnxruntime"]
RateLimitFailure = Literal["open", "closed"]
LogFormat = Literal["json", "text"]

MODEL_NAME = "isnet-general-use"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Layout:
    """Concurrency resolved for one provider (see `Settings.layout`)."""

    workers: int
    threads: int
    batch_size: int
    max_pending: int
    max_queue: int


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # json: one object a line (journald, log shippers); text: for a terminal (server/logs.py).
    log_format: LogFormat = "json"

    # Model files. `model_path` overrides the prepared files in `cache_dir`.
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "matte")
    model_path: Path | None = None
    provider: Provider = "auto"
    # auto: ONNX Runtime's CUDA provider on a usable GPU, else OpenVINO on the
    # CPU (server/openvino_engine.py); onnxruntime: ONNX Runtime on the CPU too.
    engine: EngineName = "auto"
    # auto: the fastest precision within the quality bounds (bf16 on a CPU that
    # has it, else fp32; fp16 on CUDA). bf16 is refused on a CPU without it.
    precision: Precision = "auto"

    # Concurrency; below `workers`, 0 means "pick for the provider" (see
    # `layout`). `workers` is the model runs at once, one on every provider:
    # on a GPU one stream of batches keeps it busy (a second batch gathers
    # while the first runs). On a CPU one run with every core matched two
    # 1-thread runs on one session in throughput (2 cores, 1 MP, concurrency
    # 4: 1.21-1.23 against 1.17-1.18 images/s), answered a lone request in
    # 0.86 s instead of 1.53 s, and peaked 550-650 MiB lower, as only one
    # run's activations are alive.
    workers: int = 1
    intra_op_threads: int = 0  # threads per run; 0: cores // workers
    batch_size: int = 0  # images per model run, at most
    batch_timeout_ms: float = 2.0  # how long a run waits to fill its batch
    max_pending: int = 0  # images in the pipeline at once (the memory bound)
    max_queue: int = 0  # requests waiting for the pipeline; more get 503 at once
    queue_timeout_s: float = 30.0  # longest wait for the pipeline, then 503
    # A model run past this is abandoned and its requests get 503. Generous: a
    # 2-core CPU runs a 1024 x 1024 image in ~2.7 s, a GPU a batch in ms.
    model_timeout_s: float = 120.0

    # Request limits.
    max_body_bytes: int = 10 * MIB
    # Requests reading their body at once (the pipeline's line counts only those
    # whose body is in); 0: from memory, see `uploads`.
    max_uploads: int = 0

    # Slow clients (middleware.BodyLimit, connection.py). A body may pause for
    # `body_idle_timeout_s`; past `body_timeout_s` it must have averaged
    # `body_min_rate` bytes/s (32 KiB/s: 10 MiB in 320 s, while a 1 Mbit/s link
    # sends it in 84 s), so a client trickling bytes is cut off after ~30 s.
    body_idle_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    body_min_rate: int = 32 * 1024
    header_timeout_s: float = 10.0  # from the first byte (or the connection) to the whole head
    keep_alive_timeout_s: int = 5  # an idle connection between requests (uvicorn: whole seconds)
    shutdown_timeout_s: float = 30.0  # SIGTERM: how long requests in flight may finish
    min_side: int = 64
    min_pixels: int = 4_096
    max_pixels: int = 4_194_304

    # Authentication: with no keys, any non-empty key is accepted. Keys stay out
    # of repr, so no traceback or log line that shows a Settings shows a key.
    api_keys: frozenset[str] = field(default=frozenset(), repr=False)
    # The keys file's per-key limits (server/key_limits.py), for keys that set any.
    key_limits: Mapping[str, KeyLimits] = field(default_factory=dict, repr=False)

    # Rate limit per API key (sliding window), then a lock-out.
    rate_limit_requests: int = 150
    rate_limit_window_s: float = 10.0
    rate_limit_timeout_s: float = 60.0
    # Shared by replicas when set (server/ratelimit_redis.py); else in-process.
    redis_url: str | None = field(default=None, repr=False)
    # When Redis cannot answer: "open" lets requests through (counted and
    # logged), "closed" refuses them with 503.
    rate_limit_failure: RateLimitFailure = "open"

    cors_origins: tuple[str, ...] = ()

    # Encoding: PNG level 1 was measured at 181 ms against 618 ms for
    # Pillow's default at 4 MP, for files about 10% larger.
    png_compress_level: int = 1
    webp_quality: int = 90

    # Alpha matting solves for at most this many unknown-band pixels, shrinking
    # the band's box when it has more: this is what bounds its time and memory
    # (see matting.py; plants-1 at 4 MP: 2.7 s CPU, +170 MB, instead of 116 s and 3 GB).
    matting_max_unknown_pixels: int = 65_536

    # Requests to other hosts on a client's behalf (ModelsLab's image URLs and
    # webhooks): off unless the operator turns them on, and then each one passes
    # server/outbound.py's checks; `outbound_timeout_s` bounds one whole exchange.
    outbound_enabled: bool = False
    outbound_timeout_s: float = 10.0

    # Results answered by URL (ModelsLab's `output`), kept in memory. The cap's
    # floor fits the largest possible result (a 4,194,304-pixel RGBA PNG, ~17 MB).
    # `public_base_url`: how clients reach this server (behind a proxy); None: the
    # request's own base URL.
    public_base_url: str | None = None
    results_ttl_s: float = 3600.0
    results_max_bytes: int = 256 * MIB

    # Durable storage (server/storage/): stored images, kept results, usage.
    # PostgreSQL when `database_url` is set (several replicas share it), else
    # SQLite and files under `data_dir`. `data_dir` None (a Settings built in
    # code, as tests do) puts them beside the cache, under cache_dir/data;
    # from_env defaults it to $XDG_DATA_HOME/matte (~/.local/share/matte).
    data_dir: Path | None = None
    database_url: str | None = None
    # The IMG Processing dialect's `POST /v1/images` {"url"}: only these hosts
    # (exact names, lower case) are fetched; none listed means it is off.
    fetch_allowed_hosts: frozenset[str] = frozenset()
    # Images created with a key starting "test_" are deleted after this many
    # seconds (0: kept until deleted), as the hosted service does.
    test_image_max_age_s: float = 0.0
    # rembg's `model` field: any of rembg's model names runs IS-Net when true;
    # false: only `isnet-general-use` (or none) runs, another name is a 400.
    rembg_any_model: bool = False

    @property
    def storage_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.cache_dir / "data"

    @property
    def cores(self) -> int:
        return os.cpu_count() or 1

    @property
    def memory_bytes(self) -> int:
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return 4 * 1024 * MIB

    @property
    def uploads(self) -> int:
        """Uploads at once: explicit, or as many full bodies as an eighth of memory
        holds, at least 64 (slow clients hold little) and at most 1,024."""
        if self.max_uploads:
            return self.max_uploads
        return max(64, min(1024, self.memory_bytes // 8 // self.max_body_bytes))

    def layout(self, provider: str) -> Layout:
        """The concurrency to run with on `provider`, explicit settings first."""
        workers = self.workers
        # Batching gains nothing on a CPU.
        batch_size = self.batch_size or (8 if provider == "cuda" else 1)
        threads = self.intra_op_threads or max(1, self.cores // workers)
        # One batch running and one ready per worker: enough to keep the model
        # busy; every image past that only adds memory and latency.
        max_pending = self.max_pending or 2 * workers * batch_size
        # Waiting in line costs only the compressed upload, so the line is at
        # least 16 long: a pool of 16 clients waits rather than retries.
        max_queue = self.max_queue or max(16, 4 * max_pending)
        return Layout(workers, threads, batch_size, max_pending, max_queue)

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / MODEL_NAME

    @property
    def numba_cache_dir(self) -> Path:
        return self.cache_dir / "numba"

    def model_file(self, provider: Literal["cuda", "cpu"]) -> Path:
        """The ONNX file to load on `provider` (see models/fetch.py for the layout)."""
        if self.model_path is not None:
            return self.model_path
        if provider == "cuda":
            return self.model_dir / "cuda-fp16.onnx"
        if self.precision == "int8":
            return self.model_dir / "cpu-int8.onnx"
        return self.model_dir / "cpu-fp32.onnx"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        reader_type: Callable[[Mapping[str, str]], Environment] = Environment,
    ) -> Settings:
        """`reader_type`: an Environment that also notes what is read (the command
        line's flags are made from what it notes: server/setting_flags.py)."""
        env = os.environ if env is None else env
        reader = reader_type(env)
        defaults = cls()
        keys = set(reader.csv("MATTE_API_KEYS"))
        keys_file = reader.text("MATTE_API_KEYS_FILE")
        key_limits = read_keys_file(Path(keys_file)) if keys_file else {}
        keys |= set(key_limits)
        cache_dir = reader.text("MATTE_CACHE_DIR")
        data_dir = reader.text("MATTE_DATA_DIR")
        xdg_data = reader.text("XDG_DATA_HOME")
        default_data = (Path(xdg_data) if xdg_data else Path.home() / ".local" / "share") / "matte"
        model_path = reader.text("MATTE_MODEL_PATH")
        return cls(
            host=reader.text("MATTE_HOST") or defaults.host,
            port=reader.integer("MATTE_PORT", defaults.port, 1, 65535),
            log_level=reader.choice(
                "MATTE_LOG_LEVEL", defaults.log_level, ("debug", "info", "warning", "error")
            ),
            log_format=reader.choice("MATTE_LOG_FORMAT", defaults.log_format, ("json", "text")),
            cache_dir=Path(cache_dir).expanduser() if cache_dir else defaults.cache_dir,
            model_path=Path(model_path).expanduser() if model_path else None,
            provider=reader.choice("MATTE_PROVIDER", defaults.provider, ("auto", "cuda", "cpu")),
            engine=reader.choice(
                "MATTE_ENGINE", defaults.engine, ("auto", "openvino", "onnxruntime")
            ),
            precision=reader.precision("MATTE_PRECISION", defaults.precision),
            workers=reader.integer("MATTE_WORKERS", defaults.workers, 1, 256),
            intra_op_threads=reader.integer("MATTE_INTRA_OP_THREADS", 0, 0, 1024),
            batch_size=reader.integer("MATTE_BATCH_SIZE", defaults.batch_size, 0, 256),
            batch_timeout_ms=reader.number(
                "MATTE_BATCH_TIMEOUT_MS", defaults.batch_timeout_ms, 0, 10_000
            ),
            max_pending=reader.integer("MATTE_MAX_PENDING", defaults.max_pending, 0, 100_000),
            max_queue=reader.integer("MATTE_MAX_QUEUE", defaults.max_queue, 0, 100_000),
            queue_timeout_s=reader.number(
                "MATTE_QUEUE_TIMEOUT_S", defaults.queue_timeout_s, 0, 86_400
            ),
            model_timeout_s=reader.number(
                "MATTE_MODEL_TIMEOUT_S", defaults.model_timeout_s, 0.01, 86_400
            ),
            max_body_bytes=reader.integer(
                "MATTE_MAX_BODY_BYTES", defaults.max_body_bytes, 1, 2**40
            ),
            max_uploads=reader.integer("MATTE_MAX_UPLOADS", defaults.max_uploads, 0, 100_000),
            body_idle_timeout_s=reader.number(
                "MATTE_BODY_IDLE_TIMEOUT_S", defaults.body_idle_timeout_s, 0.1, 3_600
            ),
            body_timeout_s=reader.number(
                "MATTE_BODY_TIMEOUT_S", defaults.body_timeout_s, 0.1, 86_400
            ),
            body_min_rate=reader.integer("MATTE_BODY_MIN_RATE", defaults.body_min_rate, 1, 2**40),
            header_timeout_s=reader.number(
                "MATTE_HEADER_TIMEOUT_S", defaults.header_timeout_s, 0.1, 3_600
            ),
            keep_alive_timeout_s=reader.integer(
                "MATTE_KEEP_ALIVE_TIMEOUT_S", defaults.keep_alive_timeout_s, 1, 3_600
            ),
            shutdown_timeout_s=reader.number(
                "MATTE_SHUTDOWN_TIMEOUT_S", defaults.shutdown_timeout_s, 0, 3_600
            ),
            api_keys=frozenset(keys),
            key_limits={key: limits for key, limits in key_limits.items() if limits != KeyLimits()},
            rate_limit_requests=reader.integer(
                "MATTE_RATE_LIMIT_REQUESTS", defaults.rate_limit_requests, 1, 10**9
            ),
            rate_limit_window_s=reader.number(
                "MATTE_RATE_LIMIT_WINDOW_S", defaults.rate_limit_window_s, 0.001, 86_400
            ),
            rate_limit_timeout_s=reader.number(
                "MATTE_RATE_LIMIT_TIMEOUT_S", defaults.rate_limit_timeout_s, 0, 86_400
            ),
            redis_url=reader.redis_url("MATTE_REDIS_URL"),
            rate_limit_failure=reader.choice(
                "MATTE_RATE_LIMIT_FAILURE", defaults.rate_limit_failure, ("open", "closed")
            ),
            cors_origins=tuple(reader.csv("MATTE_CORS_ORIGINS")),
            png_compress_level=reader.integer(
                "MATTE_PNG_COMPRESS_LEVEL", defaults.png_compress_level, 0, 9
            ),
            webp_quality=reader.integer("MATTE_WEBP_QUALITY", defaults.webp_quality, 1, 100),
            matting_max_unknown_pixels=reader.integer(
                "MATTE_MATTING_MAX_UNKNOWN_PIXELS",
                defaults.matting_max_unknown_pixels,
                1_024,
                4_194_304,
            ),
            outbound_enabled=reader.boolean("MATTE_OUTBOUND_ENABLED", defaults.outbound_enabled),
            outbound_timeout_s=reader.number(
                "MATTE_OUTBOUND_TIMEOUT_S", defaults.outbound_timeout_s, 0.1, 120
            ),
            public_base_url=reader.base_url("MATTE_PUBLIC_BASE_URL"),
            results_ttl_s=reader.number("MATTE_RESULTS_TTL_S", defaults.results_ttl_s, 1, 604_800),
            results_max_bytes=reader.integer(
                "MATTE_RESULTS_MAX_BYTES", defaults.results_max_bytes, 64 * MIB, 2**40
            ),
            data_dir=Path(data_dir).expanduser() if data_dir else default_data,
            database_url=reader.database_url("MATTE_DATABASE_URL"),
            fetch_allowed_hosts=frozenset(
                host.lower().rstrip(".") for host in reader.csv("MATTE_FETCH_ALLOWED_HOSTS")
            ),
            test_image_max_age_s=reader.number(
                "MATTE_TEST_IMAGE_MAX_AGE_S", defaults.test_image_max_age_s, 0, 10 * 365 * 86_400
            ),
            rembg_any_model=reader.boolean("MATTE_REMBG_ANY_MODEL", defaults.rembg_any_model),
        )
