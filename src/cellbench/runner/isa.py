"""Which CPU instruction sets the numerical libraries run on, so that a trained result can be labelled with them.

Each library picks the widest vector instructions the CPU has, and each pick changes the last bits of
a sum, which a training grows into other weights: torch's own kernels (ATen), oneDNN (torch's
convolutions and TensorFlow's, so StarDist's too), MKL (torch's float matrix products), NumPy's
dispatched loops (its sorts among them: an AVX-512 ``argsort`` orders ties differently) and OpenBLAS
(NumPy's and SciPy's linear algebra). :data:`SWITCHES` are the environment variables that hold each one
below what the CPU has, which is how another CPU is emulated on this one.

:func:`cpu_record` is what the runner keeps with every invocation (the CPU and the switches set;
cheap). :func:`effective_isa` asks each library, in a fresh process, what it runs on; :func:`label`
says it on one line (``benchmarks/isa.py`` prints both).

>>> sorted(cpu_record()) == ["flags", "model", "switches"]
True
>>> parse_probe("onednn_verbose,v1,info,cpu,isa:Intel AVX2\\n")["onednn"]
'AVX2'
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping

__all__ = ["SWITCHES", "cpu_record", "effective_isa", "label", "parse_probe"]

#: The environment variables that choose kernels, and the values the libraries in .venv accept (torch 2.14,
#: its oneDNN 3.12 and oneMKL 2024, TensorFlow 2.21's oneDNN 3.7, NumPy 2.0, scipy-openblas 0.3).
SWITCHES: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "torch's own kernels: default, avx2 or avx512, lower case; any other value "
                           "(an empty one too) is ignored with a warning",
    "ONEDNN_MAX_CPU_ISA": "oneDNN, torch's and TensorFlow's: SSE41, AVX, AVX2, AVX2_VNNI, AVX2_VNNI_2, AVX512_CORE, "
                          "AVX512_CORE_VNNI, AVX512_CORE_BF16, AVX10_1_512, ..., DEFAULT, any case, capped at "
                          "what the CPU has; an unknown value is ignored without a word",
    "MKL_ENABLE_INSTRUCTIONS": "MKL: SSE4_2, AVX, AVX2, AVX512; no effect on an AMD CPU, where MKL takes "
                               "its generic path whatever the value",
    "MKL_CBWR": "MKL's reproducibility mode: COMPATIBLE (MKL's path for any x86 CPU; it changes torch's "
                "matrix products on an AMD EPYC too), AUTO; the named branches (AVX2, AVX512 ...) are refused "
                "on an AMD CPU (MKL runs AUTO)",
    "NPY_DISABLE_CPU_FEATURES": "NumPy's dispatch targets to leave out, comma-separated, upper case, e.g. "
                                "AVX512F,AVX512CD,AVX512_SKX,AVX512_CLX,AVX512_CNL,AVX512_ICL; an unknown name "
                                "is an ImportWarning, a baseline one (SSE2) an error",
    "OPENBLAS_CORETYPE": "OpenBLAS's kernels: Nehalem (SSE4), Sandybridge (AVX), Haswell (AVX2), SkylakeX, "
                         "Cooperlake (AVX-512), Zen ..., any case; an unknown value is ignored",
}

# The CPU flags (Linux's names) that say which of the sets above the CPU could run.
_ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "fma", "avx2", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
              "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")

# oneDNN's verbose name of each CPU set -> its ONEDNN_MAX_CPU_ISA value.
_ONEDNN_NAMES = {
    "Intel SSE4.1": "SSE41",
    "Intel AVX": "AVX",
    "Intel AVX2": "AVX2",
    "Intel AVX2 with Intel DL Boost": "AVX2_VNNI",
    "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions": "AVX512_CORE",
    "Intel AVX-512 with Intel DL Boost": "AVX512_CORE_VNNI",
    "Intel AVX-512 with Intel DL Boost and bfloat16 support": "AVX512_CORE_BF16",
}

# Runs in a fresh process with ONEDNN_VERBOSE=1 and MKL_VERBOSE=1: one convolution (oneDNN) and one matrix
# product (MKL) make both libraries print what they run on; the last line is the rest, as JSON.
_PROBE = r"""
import json
out = {}
try:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
except ImportError:
    from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
out["numpy"] = [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]
try:
    import scipy.linalg, threadpoolctl
    out["openblas"] = sorted({str(i.get("architecture")) for i in threadpoolctl.threadpool_info()
                              if i.get("internal_api") == "openblas"})
except ImportError:
    pass
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    out["aten"] = torch.backends.cpu.get_cpu_capability()
    with torch.no_grad():
        torch.nn.functional.conv2d(torch.ones(2, 16, 64, 64), torch.ones(32, 16, 3, 3))
        torch.ones(64, 64) @ torch.ones(64, 64)
print("\nCELLBENCH_ISA " + json.dumps(out), flush=True)
"""


def cpu_record() -> dict:
    """The CPU (model and instruction-set flags, from /proc/cpuinfo on Linux) and the :data:`SWITCHES` set.

    Cheap, no library is loaded: the runner keeps it with every invocation. With the package versions
    it says which kernels a run could have used; :func:`effective_isa` says which it does use.
    """
    model, flags = platform.processor(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read()
    except OSError:
        info = ""
    if m := re.search(r"^model name\s*:\s*(.*)$", info, re.MULTILINE):
        model = m.group(1).strip()
    if m := re.search(r"^flags\s*:\s*(.*)$", info, re.MULTILINE):
        have = set(m.group(1).split())
        flags = [f for f in _ISA_FLAGS if f in have]
    return {"model": model, "flags": flags, "switches": {k: os.environ[k] for k in SWITCHES if k in os.environ}}


def parse_probe(text: str) -> dict:
    """What the probe process printed (stdout and stderr), as ``{"onednn", "mkl", "mkl_cnr", ...}``.

    ``onednn`` is the ``ONEDNN_MAX_CPU_ISA`` value of the set oneDNN runs (its verbose name where it
    has no short one), ``mkl`` the processor kind MKL's verbose header names and ``mkl_cnr`` its
    reproducibility mode; the probe's JSON line adds ``aten``, ``numpy`` (the dispatch targets on) and
    ``openblas`` (the core type of each OpenBLAS loaded). A library that printed nothing is left out.

    >>> parse_probe("MKL_VERBOSE oneMKL 2024.0 Product build 20240605 for Intel(R) 64 architecture "
    ...             "Intel(R) Architecture processors, Lnx 2.60GHz lp64 gnu_thread\\n"
    ...             "MKL_VERBOSE SGEMM(N,N,64) 1.2ms CNR:OFF Dyn:1\\n" 'CELLBENCH_ISA {"aten": "AVX512"}')
    {'mkl': 'Intel(R) Architecture processors', 'mkl_cnr': 'OFF', 'aten': 'AVX512'}
    """
    found: dict = {}
    if m := re.search(r"^onednn_verbose,.*?,info,cpu,isa:(.*)$", text, re.MULTILINE):
        name = m.group(1).strip()
        found["onednn"] = _ONEDNN_NAMES.get(name, name)
    if m := re.search(r"^MKL_VERBOSE .*? architecture (.+?), (?:Lnx|Win|OSX|Mac)", text, re.MULTILINE):
        found["mkl"] = m.group(1).strip()
    if m := re.search(r"^MKL_VERBOSE .*\bCNR:(\S+)", text, re.MULTILINE):
        found["mkl_cnr"] = m.group(1)
    if m := re.search(r"^CELLBENCH_ISA (\{.*\})$", text, re.MULTILINE):
        found.update(json.loads(m.group(1)))
    return found


def effective_isa(env: Mapping[str, str] | None = None, *, python: str | None = None, timeout: float = 300.0) -> dict:
    """Ask each library, in a fresh process, which instruction set it runs on.

    ``env`` replaces this process's environment for the probe (None: this one's), so that
    ``effective_isa({**os.environ, "ATEN_CPU_CAPABILITY": "avx2"})`` says what a run under that
    switch gets. Returns :func:`cpu_record` of that environment plus :func:`parse_probe`'s keys,
    and ``warnings``: what the probe wrote to stderr that is not a verbose line (a switch value a
    library ignored says so there). Takes a few seconds (the probe imports torch).

    Raises
    ------
    RuntimeError
        The probe failed (its stderr is in the message).
    """
    env = dict(os.environ if env is None else env)
    probe_env = {**env, "ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run([python or sys.executable, "-c", _PROBE], env=probe_env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the instruction-set probe failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    record = cpu_record()
    record["switches"] = {k: env[k] for k in SWITCHES if k in env}
    record.update(parse_probe(done.stdout + "\n" + done.stderr))
    record["warnings"] = [line for line in done.stderr.splitlines()
                          if line.strip() and not line.startswith(("onednn_verbose", "MKL_VERBOSE"))]
    return record


def label(isa: Mapping) -> str:
    """One line naming the set each library runs on, from :func:`effective_isa`'s record.

    >>> label({"aten": "AVX2", "onednn": "AVX2", "mkl": "Intel(R) Architecture processors", "mkl_cnr": "OFF",
    ...        "numpy": ["SSE41", "AVX2"], "openblas": ["Haswell"]})
    'aten AVX2 | onednn AVX2 | mkl Intel(R) Architecture processors (CNR OFF) | numpy AVX2 | openblas Haswell'
    """
    parts = []
    if "aten" in isa:
        parts.append(f"aten {isa['aten']}")
    if "onednn" in isa:
        parts.append(f"onednn {isa['onednn']}")
    if "mkl" in isa:
        parts.append(f"mkl {isa['mkl']}" + (f" (CNR {isa['mkl_cnr']})" if "mkl_cnr" in isa else ""))
    if "numpy" in isa:
        parts.append(f"numpy {isa['numpy'][-1] if isa['numpy'] else 'baseline'}")
    if isa.get("openblas"):
        parts.append("openblas " + "+".join(isa["openblas"]))
    return " | ".join(parts)
