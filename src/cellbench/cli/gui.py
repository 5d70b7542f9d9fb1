"""``cellbench gui``: the web interface (``pip install 'cellbench[gui]'``)."""

from __future__ import annotations

import argparse
import os

from cellbench.errors import DataError

__all__ = ["add_gui_command"]


def _gui(args: argparse.Namespace) -> int:
    try:
        from cellbench.gui.app import serve
    except ImportError as exc:
        raise DataError(f"the GUI needs NiceGUI ({exc.name} is missing): pip install 'cellbench[gui]'") from exc
    if args.port < 0 or args.port > 65535:
        raise DataError(f"--port must be 0-65535, got {args.port}")
    if args.slots < 1:
        raise DataError(f"--slots must be at least 1, got {args.slots}")
    if not args.max_image_mb > 0:
        raise DataError(f"--max-image-mb must be positive, got {args.max_image_mb}")
    if os.path.exists(args.workspace) and not os.path.isdir(args.workspace):
        raise DataError("workspace exists and is not a folder", path=args.workspace)
    try:
        os.makedirs(args.workspace, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the workspace folder ({exc.strerror})", path=args.workspace) from exc
    port = args.port or _free_port(args.host)

    def ready(url: str) -> None:
        print(f"cellbench gui: {url}", flush=True)

    serve(args.workspace, host=args.host, port=port, token=args.token, slots=args.slots, backbone=args.backbone,
          checkpoint=args.checkpoint, max_upload_mb=args.max_upload_mb, max_image_mb=args.max_image_mb,
          on_ready=ready)
    return 0


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def add_gui_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="serve the web GUI (data, annotation with SAM, train, predict, compare, jobs)",
                       description="Serve the web GUI. It prints its URL as one line of standard output. It listens on "
                                   "127.0.0.1 by default; any other address requires a token (one is generated when "
                                   "--token is not given and shown in the URL). It reads and writes only inside the "
                                   "workspace folder.")
    p.add_argument("--workspace", default=".", help="folder the GUI reads and writes (default: the current folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port; default 8765)")
    p.add_argument("--token", help="access token (required on any address but 127.0.0.1; generated when not given)")
    p.add_argument("--slots", type=int, default=max(1, (os.cpu_count() or 1) // 8),
                   help="jobs that run at once, each on cpu_count / slots cores (default: one per 8 cores, at least 1)")
    p.add_argument("--backbone", default="litemedsam", help="SAM backbone for annotation prompts (default litemedsam)")
    p.add_argument("--checkpoint", help="SAM checkpoint file for --backbone vit_b / vit_l / vit_h")
    p.add_argument("--max-upload-mb", type=float, default=50, help="largest upload accepted (MB, default 50)")
    p.add_argument("--max-image-mb", type=float, default=256,
                   help="most memory an uploaded image may decode to (MB of pixels, read from its header; default 256)")
    p.set_defaults(func=_gui)
