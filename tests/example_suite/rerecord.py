"""Re-record the example suite's committed cassettes against the bundled sample server.

    python -m tests.example_suite.rerecord      (from the repository root)

Starts the sample staging server behind TLS with a throwaway private CA (so the
hard-coded wss://api.staging.wsreplay.test test is recorded too) and runs the suite
with --wsreplay-mode all. The cassettes land in cassettes/test_staging_example/.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.support.tls import make_private_ca
from wsreplay.sample_server import SampleServerConfig, start_sample_server

SUITE = Path(__file__).parent
STAGING_HOST = "api.staging.wsreplay.test"


async def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        ca = make_private_ca(Path(scratch))
        server = await start_sample_server(
            config=SampleServerConfig(event_interval=0.05), ssl_context=ca.server_ssl_context([STAGING_HOST])
        )
        try:
            command = [
                sys.executable,
                "-m",
                "pytest",
                str(SUITE),
                "-c",
                str(SUITE / "pytest.ini"),
                "-q",
                "--wsreplay-mode",
                "all",
                "--wsreplay-upstream",
                f"https://127.0.0.1:{server.port}",
                "--wsreplay-upstream-ca",
                str(ca.ca_cert_path),
                "--wsreplay-resolve",
                f"{STAGING_HOST}=127.0.0.1:{server.port}",
            ]
            process = await asyncio.create_subprocess_exec(*command)
            return await process.wait()
        finally:
            await server.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
