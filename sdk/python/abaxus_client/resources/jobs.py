"""Bulk invoicing jobs (§12): poll one until it is done."""

from __future__ import annotations

import asyncio
import time

from abaxus_client._transport import Call
from abaxus_client.models import Job
from abaxus_client.resources._base import AsyncResource, SyncResource, seg

__all__ = ["AsyncJobs", "Jobs"]


def _get(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{seg(job_id)}", Job)


class Jobs(SyncResource):
    def get(self, job_id: str) -> Job:
        return self._t.request(_get(job_id))

    def wait(self, job_id: str, *, timeout: float = 300.0, interval: float = 0.5) -> Job:
        """Poll until the job succeeded or failed; ``TimeoutError`` (job still running) after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.done:
                return job
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"Job {job_id} is still {job.status} after {timeout:g} s; poll jobs.get() later.")
            time.sleep(interval)


class AsyncJobs(AsyncResource):
    async def get(self, job_id: str) -> Job:
        return await self._t.request(_get(job_id))

    async def wait(self, job_id: str, *, timeout: float = 300.0, interval: float = 0.5) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job.done:
                return job
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"Job {job_id} is still {job.status} after {timeout:g} s; poll jobs.get() later.")
            await asyncio.sleep(interval)
