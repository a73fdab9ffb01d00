"""rembg's own server (`rembg s`), the peer Matte is compared with, on the same weights.

rembg pulls the CPU `onnxruntime` wheel, which would fight `onnxruntime-gpu`
over the same module in Matte's virtualenv, so it lives in a virtualenv of its
own under the cache directory, made once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from load import Endpoint, multipart_endpoint
from servers import Spec

MODEL = "isnet-general-use"
# `cli` for `rembg s`; `cpu` for onnxruntime, which recent rembg no longer pulls by itself.
REQUIREMENT = "rembg[cpu,cli]"


def ensure_venv(venv: Path, log_path: Path) -> Path:
    """The `rembg` command in `venv`, installing what is missing there first."""
    rembg = venv / "bin" / "rembg"
    python = venv / "bin" / "python"
    if rembg.exists() and _imports(python, "rembg", "onnxruntime"):
        return rembg
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        if not python.exists():
            # sys.executable makes a venv of the same base interpreter, without its packages.
            subprocess.run([sys.executable, "-m", "venv", str(venv)],
                           check=True, stdout=log, stderr=subprocess.STDOUT)
        pip = [str(python), "-m", "pip", "install", "--quiet", REQUIREMENT]
        subprocess.run(pip, check=True, stdout=log, stderr=subprocess.STDOUT)
    return rembg


def _imports(python: Path, *modules: str) -> bool:
    code = "; ".join(f"import {module}" for module in modules)
    result = subprocess.run([str(python), "-c", code], capture_output=True, check=False)
    return result.returncode == 0


def versions(venv: Path) -> str:
    """rembg's and its onnxruntime's versions, for the report's header."""
    code = ("import importlib.metadata as m; "
            "print(f\"rembg {m.version('rembg')}, onnxruntime {m.version('onnxruntime')}\")")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def install_weights(model_file: Path, u2net_home: Path) -> None:
    """Give rembg `model_file` as its isnet-general-use weights: Matte's pruned graph
    (the two servers run the same graph) or the original one (rembg as its users run it).

    rembg looks for `$U2NET_HOME/<model>.onnx` before downloading, and
    MODEL_CHECKSUM_DISABLED lets it accept a file that is not its release's.
    """
    target = u2net_home / f"{MODEL}.onnx"
    if target.exists() and target.stat().st_size == model_file.stat().st_size:
        return
    u2net_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, target)


def rembg_spec(rembg: Path, port: int, u2net_home: Path, base_env: Mapping[str, str],
               name: str = "rembg") -> Spec:
    env = {k: v for k, v in base_env.items() if not k.startswith("MATTE_")}
    env.update(
        U2NET_HOME=str(u2net_home),
        MODEL_CHECKSUM_DISABLED="1",
        # `rembg s` calls webbrowser.open at start-up; `true` makes that a no-op.
        BROWSER="true",
        VIRTUAL_ENV=str(rembg.parent.parent),
        PATH=f"{rembg.parent}{os.pathsep}{base_env.get('PATH', '')}",
    )
    # Its defaults otherwise (40 request threads sharing one session, ORT's own
    # thread count): that is rembg as users run it. --no-ui skips Gradio.
    argv = [str(rembg), "s", "--host", "127.0.0.1", "--port", str(port),
            "--no-ui", "--log_level", "warning"]
    # `/api` is the OpenAPI page: it answers once uvicorn is up. The model
    # itself loads on the first request, which the harness sends untimed.
    return Spec(name, argv, env, f"http://127.0.0.1:{port}", "/api")


def rembg_endpoint(spec: Spec, jpeg: bytes) -> Endpoint:
    # Field names from rembg/commands/s_command.py: `file`, and `model` as a form field.
    return multipart_endpoint(
        spec.base_url + "/api/remove",
        files={"file": ("photo.jpg", jpeg, "image/jpeg")},
        data={"model": MODEL},
        headers={},
    )
