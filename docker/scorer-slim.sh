#!/bin/sh
# The scorer image's virtual environment without what `serve` never runs (docker/Dockerfile, stage
# scorer-env): each step says why the scorer works the same without it, and the last one imports
# what `serve` imports, so that a step that took too much stops the build.
#
#   sh docker/scorer-slim.sh /opt/sensorwatch
set -eu
VENV=${1:-/opt/sensorwatch}
PYTHON=$VENV/bin/python
cd "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"

# pip and setuptools: nothing is installed into a running scorer; the project itself comes from the
# wheel stage as files.
"$PYTHON" -m pip uninstall --yes --quiet pip setuptools

# Arrow Flight (Arrow's RPC) and pyarrow's C++ test module: the archive writes Parquet files.
rm -f pyarrow/libarrow_flight.so* pyarrow/libarrow_python_flight.so* pyarrow/_flight.*.so \
  pyarrow/_pyarrow_cpp_tests.*.so
# The wheel's copies of each Arrow library under the names only a compiler links against
# (libX.so, libX.so.A.B.C): the loader asks for libX.so.A.
for soname in pyarrow/lib*.so.[0-9]*; do
  case $soname in *.so.*.*) continue ;; esac
  rm -f "${soname%.so.*}.so" "$soname".*
done

# Cython, C and C++ sources, headers and type stubs: read by compilers and type checkers only.
find . -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.cc' \
  -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' -o -name '*.pyi' \) -delete

# fontTools' compiled accelerators (matplotlib reads font names with fontTools; the review plots
# need none of them): each has its pure-Python module beside it, which fontTools runs without one.
find fontTools -name '*.so' | while read -r so; do
  if [ -f "${so%%.cpython-*}.py" ]; then rm "$so"; fi
done

# The definitions of every AWS service but S3 (MLflow's S3 artifact store) and those that
# botocore's credential providers call (STS, SSO, SSO OIDC, sign-in).
for dir in botocore/data/*/ boto3/data/*/; do
  case $(basename "$dir") in s3 | sts | sso | sso-oidc | signin) ;; *) rm -r "$dir" ;; esac
done

# The bytecode of what `serve` does not import (measured with PYTHONPROFILEIMPORTTIME on a scorer
# raising alarms): Databricks' SDK, fontTools, GitPython, MLflow's server, ONNX Runtime's model
# tools, NumPy's build tools. Should one be imported after all, Python compiles it in memory.
for dir in databricks fontTools git gitdb smmap pyasn1_modules mlflow/server \
  onnxruntime/transformers onnxruntime/quantization onnxruntime/tools numpy/f2py numpy/distutils; do
  if [ -d "$dir" ]; then find "$dir" -depth -type d -name __pycache__ -exec rm -r {} +; fi
done

"$PYTHON" - <<'PY'
import boto3
import matplotlib.backends.backend_agg  # noqa: F401  (the review plots)
import onnxruntime  # noqa: F401
import pyarrow.compute  # noqa: F401
import pyarrow.dataset  # noqa: F401
import pyarrow.fs  # noqa: F401
import pyarrow.parquet  # noqa: F401
from fontTools.cu2qu import curve_to_quadratic

curve_to_quadratic([(0, 0), (1, 2), (3, 2), (4, 0)], 0.1)
services = boto3.session.Session().get_available_services()
assert "s3" in services, services
for service in services:
    boto3.session.Session().client(service, region_name="eu-central-1")
PY
