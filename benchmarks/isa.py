"""Print which CPU instruction set each numerical library runs on in this environment, so a run can be labelled.

torch's own kernels (ATen), oneDNN, MKL, NumPy and OpenBLAS each pick the widest the CPU has unless a
switch holds them lower (cellbench.runner.isa.SWITCHES); the result of a training changes with them.

    .venv/bin/python benchmarks/isa.py                         # one line, e.g. aten AVX512 | onednn AVX512_CORE_BF16 | ...
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/isa.py --json
    .venv/bin/python benchmarks/isa.py --switches              # the switches and the values they take
"""

from __future__ import annotations

import argparse
import json

from cellbench.runner.isa import SWITCHES, effective_isa, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", help="a name for this environment, printed first (make test-isa's set)")
    parser.add_argument("--json", action="store_true", help="the whole record as JSON instead of one line")
    parser.add_argument("--switches", action="store_true", help="list the switches and their values, then stop")
    args = parser.parse_args()
    if args.switches:
        for name, values in SWITCHES.items():
            print(f"{name}: {values}")
        return
    isa = effective_isa()
    if args.json:
        print(json.dumps({"name": args.name, **isa} if args.name else isa, indent=2))
        return
    set_ = " ".join(f"{k}={v}" for k, v in isa["switches"].items()) or "no switch set"
    print(f"{args.name + ': ' if args.name else ''}{label(isa)}  [{isa['model']}; {set_}]")
    for line in isa["warnings"]:
        print(f"  warning: {line}")


if __name__ == "__main__":
    main()
