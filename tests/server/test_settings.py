from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import Layout, Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
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
