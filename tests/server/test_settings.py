from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import MIB, Layout, Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    # The environment's one difference: a data dir of its own (XDG), where a
    # Settings built in code keeps its data beside the cache.
    assert settings == Settings(data_dir=Path.home() / ".local" / "share" / "matte")
    assert Settings().storage_dir == Settings().cache_dir / "data"
    assert settings.storage_dir == Path.home() / ".local" / "share" / "matte"
    assert settings.database_url is None and settings.fetch_allowed_hosts == frozenset()
    assert settings.test_image_max_age_s == 0
    assert settings.api_keys == frozenset()
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.model_file("cpu").name == "cpu-fp32.onnx"
    assert settings.model_file("cuda").name == "cuda-fp16.onnx"


def test_every_variable_is_read(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# ops team\nsk-file-1\n\n  sk-file-2  \n")
    env = {
        "MATTE_HOST": "0.0.0.0",
        "MATTE_PORT": "9000",
        "MATTE_LOG_LEVEL": "DEBUG",
        "MATTE_CACHE_DIR": str(tmp_path),
        "MATTE_MODEL_PATH": str(tmp_path / "m.onnx"),
        "MATTE_PROVIDER": "cpu",
        "MATTE_PRECISION": "int8",
        "MATTE_WORKERS": "2",
        "MATTE_INTRA_OP_THREADS": "1",
        "MATTE_BATCH_SIZE": "8",
        "MATTE_BATCH_TIMEOUT_MS": "5",
        "MATTE_MAX_PENDING": "3",
        "MATTE_MAX_QUEUE": "7",
        "MATTE_QUEUE_TIMEOUT_S": "2.5",
        "MATTE_MAX_BODY_BYTES": "1000",
        "MATTE_API_KEYS": "sk-a, sk-b",
        "MATTE_API_KEYS_FILE": str(keys),
        "MATTE_RATE_LIMIT_REQUESTS": "5",
        "MATTE_RATE_LIMIT_WINDOW_S": "1.5",
        "MATTE_RATE_LIMIT_TIMEOUT_S": "30",
        "MATTE_CORS_ORIGINS": "https://a.example,https://b.example",
        "MATTE_PNG_COMPRESS_LEVEL": "6",
        "MATTE_WEBP_QUALITY": "80",
        "MATTE_MATTING_MAX_UNKNOWN_PIXELS": "500000",
        "MATTE_OUTBOUND_ENABLED": "true",
        "MATTE_OUTBOUND_TIMEOUT_S": "2.5",
        "MATTE_PUBLIC_BASE_URL": "https://matte.example.com/base/",
        "MATTE_RESULTS_TTL_S": "600",
        "MATTE_RESULTS_MAX_BYTES": str(100 * 1024 * 1024),
        "MATTE_DATA_DIR": str(tmp_path / "data"),
        "MATTE_DATABASE_URL": "postgresql://matte:secret@db.internal:5432/matte",
        "MATTE_FETCH_ALLOWED_HOSTS": "Storage.Example.com., cdn.example.org",
        "MATTE_TEST_IMAGE_MAX_AGE_S": "86400",
    }
    settings = Settings.from_env(env)
    assert settings.host == "0.0.0.0" and settings.port == 9000 and settings.log_level == "debug"
    assert settings.model_file("cpu") == tmp_path / "m.onnx"
    assert settings.provider == "cpu" and settings.precision == "int8"
    # Explicit settings win over the provider's defaults.
    for provider in ("cpu", "cuda"):
        assert settings.layout(provider) == Layout(
            workers=2, threads=1, batch_size=8, max_pending=3, max_queue=7
        )
    assert settings.batch_timeout_ms == 5 and settings.queue_timeout_s == 2.5
    assert settings.max_body_bytes == 1000
    assert settings.api_keys == {"sk-a", "sk-b", "sk-file-1", "sk-file-2"}
    assert (
        settings.rate_limit_requests,
        settings.rate_limit_window_s,
        settings.rate_limit_timeout_s,
    ) == (5, 1.5, 30)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert (settings.png_compress_level, settings.webp_quality) == (6, 80)
    assert settings.matting_max_unknown_pixels == 500_000
    assert settings.outbound_enabled and settings.outbound_timeout_s == 2.5
    assert settings.public_base_url == "https://matte.example.com/base"
    assert settings.results_ttl_s == 600 and settings.results_max_bytes == 100 * 1024 * 1024
    assert settings.storage_dir == tmp_path / "data"
    assert settings.database_url == "postgresql://matte:secret@db.internal:5432/matte"
    assert settings.fetch_allowed_hosts == {"storage.example.com", "cdn.example.org"}
    assert settings.test_image_max_age_s == 86_400


def test_engine_and_precision_default_to_auto() -> None:
    settings = Settings.from_env({})
    assert (settings.engine, settings.precision) == ("auto", "auto")


@pytest.mark.parametrize("engine", ["auto", "openvino", "onnxruntime", "OpenVINO"])
def test_engine_choices(engine: str) -> None:
    assert Settings.from_env({"MATTE_ENGINE": engine}).engine == engine.lower()


@pytest.mark.parametrize(
    ("raw", "precision"),
    [("auto", "auto"), ("fp32", "fp32"), ("BF16", "bf16"), ("int8", "int8"), ("full", "fp32")],
)
def test_precision_choices(raw: str, precision: str) -> None:
    # "full" is what MATTE_PRECISION called fp32 before bf16: old settings keep working.
    assert Settings.from_env({"MATTE_PRECISION": raw}).precision == precision


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MATTE_ENGINE", "tensorrt", "MATTE_ENGINE: must be one of auto, openvino, onnxruntime"),
        ("MATTE_PRECISION", "fp16", "MATTE_PRECISION: must be one of auto, fp32, bf16, int8"),
    ],
)
def test_bad_engine_values(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_bf16_and_fp32_load_the_fp32_file() -> None:
    # bf16 is a compile-time hint to OpenVINO over the same weights.
    for precision in ("auto", "fp32", "bf16"):
        assert Settings(precision=precision).model_file("cpu").name == "cpu-fp32.onnx"


def test_the_data_dir_follows_xdg_data_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"XDG_DATA_HOME": str(tmp_path)})
    assert settings.storage_dir == tmp_path / "matte"


@pytest.mark.parametrize("url", ["mysql://db/matte", "db.internal/matte", "sqlite:///x"])
def test_a_database_url_must_be_postgresql(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"MATTE_DATABASE_URL": url})
    assert str(raised.value) == "MATTE_DATABASE_URL: must be a postgresql:// URL"


def test_a_postgres_scheme_is_accepted_too() -> None:
    url = "postgres://u:p@h/d"
    assert Settings.from_env({"MATTE_DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0.0), ("3600", 3600.0)])
def test_test_image_max_age_edges(raw: str, seconds: float) -> None:
    assert Settings.from_env({"MATTE_TEST_IMAGE_MAX_AGE_S": raw}).test_image_max_age_s == seconds


def test_a_negative_test_image_max_age_is_refused() -> None:
    with pytest.raises(SettingsError, match="MATTE_TEST_IMAGE_MAX_AGE_S: must be between 0"):
        Settings.from_env({"MATTE_TEST_IMAGE_MAX_AGE_S": "-1"})


def test_int8_precision_picks_the_quantised_cpu_file() -> None:
    settings = Settings(precision="int8")
    assert settings.model_file("cpu").name == "cpu-int8.onnx"
    assert settings.model_file("cuda").name == "cuda-fp16.onnx"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MATTE_PORT", "http", "MATTE_PORT: expected an integer"),
        ("MATTE_PORT", "70000", "MATTE_PORT: must be between 1 and 65535"),
        ("MATTE_WORKERS", "0", "MATTE_WORKERS: must be between 1 and 256"),
        ("MATTE_PROVIDER", "tpu", "MATTE_PROVIDER: must be one of auto, cuda, cpu"),
        ("MATTE_RATE_LIMIT_WINDOW_S", "soon", "MATTE_RATE_LIMIT_WINDOW_S: expected a number"),
        ("MATTE_API_KEYS_FILE", "/nonexistent/keys", "MATTE_API_KEYS_FILE: cannot read"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_threads_default_to_the_cores_split_across_workers() -> None:
    settings = Settings(workers=1)
    assert settings.layout("cpu").threads == settings.cores
    assert Settings(workers=settings.cores * 2).layout("cpu").threads == 1


@pytest.mark.parametrize(
    ("cores", "provider", "expected"),
    [
        # CPU: one run with every core, no batching, two images in the pipeline,
        # a line of 16.
        (2, "cpu", Layout(workers=1, threads=2, batch_size=1, max_pending=2, max_queue=16)),
        (16, "cpu", Layout(workers=1, threads=16, batch_size=1, max_pending=2, max_queue=16)),
        (1, "cpu", Layout(workers=1, threads=1, batch_size=1, max_pending=2, max_queue=16)),
        # GPU: one stream of batches of 8, one batch running and one gathering.
        (16, "cuda", Layout(workers=1, threads=16, batch_size=8, max_pending=16, max_queue=64)),
    ],
)
def test_layout_defaults_per_provider(
    monkeypatch: pytest.MonkeyPatch, cores: int, provider: str, expected: Layout
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert Settings().layout(provider) == expected


def test_outbound_and_result_defaults() -> None:
    settings = Settings()
    assert settings.outbound_enabled is False
    assert settings.outbound_timeout_s == 10.0
    assert settings.public_base_url is None
    assert settings.results_ttl_s == 3600.0
    assert settings.results_max_bytes == 256 * 1024 * 1024


@pytest.mark.parametrize(
    ("raw", "enabled"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
        ("  ", False),
    ],
)
def test_outbound_enabled_forms(raw: str, enabled: bool) -> None:
    assert Settings.from_env({"MATTE_OUTBOUND_ENABLED": raw}).outbound_enabled is enabled


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://matte.example.com/", "https://matte.example.com"),
        ("  https://a.example/x//  ", "https://a.example/x"),
    ],
)
def test_public_base_url_forms(raw: str, url: str) -> None:
    assert Settings.from_env({"MATTE_PUBLIC_BASE_URL": raw}).public_base_url == url


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MATTE_OUTBOUND_ENABLED", "sometimes", "MATTE_OUTBOUND_ENABLED: must be true or false"),
        (
            "MATTE_OUTBOUND_TIMEOUT_S",
            "0.09",
            "MATTE_OUTBOUND_TIMEOUT_S: must be between 0.1 and 120",
        ),
        (
            "MATTE_OUTBOUND_TIMEOUT_S",
            "121",
            "MATTE_OUTBOUND_TIMEOUT_S: must be between 0.1 and 120",
        ),
        ("MATTE_RESULTS_TTL_S", "0.5", "MATTE_RESULTS_TTL_S: must be between 1 and 604800"),
        ("MATTE_RESULTS_TTL_S", "604801", "MATTE_RESULTS_TTL_S: must be between 1 and 604800"),
        (
            "MATTE_RESULTS_MAX_BYTES",
            str(64 * 1024 * 1024 - 1),
            "MATTE_RESULTS_MAX_BYTES: must be between 67108864 and",
        ),
        ("MATTE_PUBLIC_BASE_URL", "matte.example.com", "MATTE_PUBLIC_BASE_URL: must be an http"),
        ("MATTE_PUBLIC_BASE_URL", "ftp://matte.example.com", "MATTE_PUBLIC_BASE_URL: must be"),
        ("MATTE_PUBLIC_BASE_URL", "https://", "MATTE_PUBLIC_BASE_URL: must be"),
        ("MATTE_PUBLIC_BASE_URL", "https://a.example/?x=1", "MATTE_PUBLIC_BASE_URL: must be"),
        ("MATTE_PUBLIC_BASE_URL", "https://a.example/#x", "MATTE_PUBLIC_BASE_URL: must be"),
    ],
)
def test_bad_outbound_and_result_values(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_the_edges_of_the_outbound_and_result_ranges() -> None:
    env = {
        "MATTE_OUTBOUND_TIMEOUT_S": "0.1",
        "MATTE_RESULTS_TTL_S": "1",
        "MATTE_RESULTS_MAX_BYTES": str(64 * 1024 * 1024),
    }
    settings = Settings.from_env(env)
    assert settings.outbound_timeout_s == 0.1 and settings.results_ttl_s == 1
    assert settings.results_max_bytes == 64 * 1024 * 1024
    high = {"MATTE_OUTBOUND_TIMEOUT_S": "120", "MATTE_RESULTS_TTL_S": "604800"}
    assert Settings.from_env(high).results_ttl_s == 604_800


def test_slow_client_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "MATTE_MAX_UPLOADS": "70",
            "MATTE_BODY_IDLE_TIMEOUT_S": "4",
            "MATTE_BODY_TIMEOUT_S": "20",
            "MATTE_BODY_MIN_RATE": "1000",
        }
    )
    assert settings.uploads == 70
    assert (settings.body_idle_timeout_s, settings.body_timeout_s) == (4, 20)
    assert settings.body_min_rate == 1000
    defaults = Settings()
    assert (defaults.header_timeout_s, defaults.keep_alive_timeout_s) == (10, 5)
    assert defaults.shutdown_timeout_s == 30


@pytest.mark.parametrize(
    ("memory", "body", "expected"),
    [(32 * 1024 * MIB, 10 * MIB, 409), (1024 * MIB, 10 * MIB, 64), (10**15, 1 * MIB, 1024)],
    ids=["from-memory", "at-least-64", "at-most-1024"],
)
def test_uploads_are_sized_from_memory(
    monkeypatch: pytest.MonkeyPatch, memory: int, body: int, expected: int
) -> None:
    monkeypatch.setattr(Settings, "memory_bytes", property(lambda self: memory))
    assert Settings(max_body_bytes=body).uploads == expected
