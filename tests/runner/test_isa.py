"""cellbench.runner.isa: the CPU record every invocation keeps, the verbose lines it reads, and a probe that
sees a switch take effect in a fresh process (torch's own kernels held at AVX2, oneDNN at SSE4.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellbench.runner import environment
from cellbench.runner.isa import SWITCHES, cpu_record, effective_isa, label, parse_probe

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def test_cpu_record_names_the_switches_set(monkeypatch):
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("UNRELATED_VARIABLE", "1")
    record = cpu_record()
    assert record["switches"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert isinstance(record["model"], str) and isinstance(record["flags"], list)
    assert environment()["cpu"] == record  # what the runner keeps with every invocation


def test_parse_probe_reads_each_library_line():
    text = "\n".join([
        "onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)",
        "onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2",
        "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions",
        "MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) Advanced "
        "Vector Extensions 512 (Intel(R) AVX-512) enabled processors, Lnx 2.60GHz lp64 gnu_thread",
        "MKL_VERBOSE SGEMM(N,N,64,64,64,0x1,0x2,64,0x3,64,0x4,0x5,64) 12.13ms CNR:COMPATIBLE Dyn:1 FastMM:1",
        'CELLBENCH_ISA {"numpy": ["SSE41", "AVX2"], "openblas": ["Haswell"], "aten": "AVX2"}',
    ])
    assert parse_probe(text) == {
        "onednn": "AVX512_CORE", "mkl": "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) enabled processors",
        "mkl_cnr": "COMPATIBLE", "numpy": ["SSE41", "AVX2"], "openblas": ["Haswell"], "aten": "AVX2"}
    # a set oneDNN names that has no short name here is kept as oneDNN says it; nothing printed, nothing found
    assert parse_probe("onednn_verbose,v1,info,cpu,isa:Intel AVX10.2\n") == {"onednn": "Intel AVX10.2"}
    assert parse_probe("") == {}


def _x86_with_avx2() -> bool:
    return "avx2" in cpu_record()["flags"]


@pytest.fixture(scope="module")
def native() -> dict:
    """benchmarks/isa.py's record with no switch set: what this CPU gives each library."""
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    done = subprocess.run([sys.executable, str(BENCHMARKS / "isa.py"), "--name", "here", "--json"],
                          capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout)


def test_the_isa_script_prints_a_labelled_record(native):
    assert native["name"] == "here" and native["switches"] == {}
    assert native["aten"] and native["numpy"] is not None
    assert label(native).startswith(f"aten {native['aten']} | ")


@pytest.mark.skipif(not _x86_with_avx2(), reason="the CPU has no AVX2 (or no /proc/cpuinfo to say so)")
def test_a_switch_changes_what_the_probe_reports(native):
    assert native["aten"] in {"AVX2", "AVX512"} and native["onednn"]
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    held = effective_isa({**env, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "SSE41"})
    assert held["aten"] == "AVX2" and held["onednn"] == "SSE41"
    assert held["switches"] == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "SSE41"}
    if native["aten"] == "AVX512":  # on an AVX2 machine avx2 is what torch runs anyway
        assert held["aten"] != native["aten"]
    if native["onednn"] != "SSE41":
        assert held["onednn"] != native["onednn"]


@pytest.mark.skipif(not _x86_with_avx2(), reason="the CPU has no AVX2 (or no /proc/cpuinfo to say so)")
def test_a_value_torch_does_not_know_is_ignored_with_its_warning(native):
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    odd = effective_isa({**env, "ATEN_CPU_CAPABILITY": "AVX2"})  # torch takes lower case only
    assert odd["aten"] == native["aten"]
    assert any("ATEN_CPU_CAPABILITY" in line for line in odd["warnings"])
