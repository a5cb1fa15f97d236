"""Schemathesis hooks for `run.sh`: authenticate every request as the run's admin.

A fixed `-H Authorization` header would not do: the fuzzer also calls `POST /api/auth/logout`, which revokes the
calling access token at once (by design), so every later request would be a 401 and test nothing. The token is
fetched by logging in and fetched again every few seconds, so a logout costs at most that long of coverage.
"""

import os

import requests
import schemathesis


@schemathesis.auth(refresh_interval=2)
class AdminLogin:
    def get(self, case, ctx):
        base = os.environ["VIGIL_URL"]
        r = requests.post(
            f"{base}/api/auth/login",
            json={"username": os.environ["FUZZ_ADMIN_USER"], "password": os.environ["FUZZ_ADMIN_PASSWORD"]},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["access_token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        # Operations that document no security are still sent the token: it must not change their answer.
        case.headers["Authorization"] = f"Bearer {data}"
