"""Sending a sweep to a running Ray cluster through Ray's Jobs API, and watching it.

    plasticity submit pmnist-activations --address http://127.0.0.1:8265 \\
        --storage s3://bucket/plasticity
    plasticity status --address http://127.0.0.1:8265 [--job ID]
    plasticity logs ID --address http://127.0.0.1:8265

The spec is validated here and travels in the job's environment (PLASTICITY_SPEC; not as
a working directory: Ray 2.60 garbage-collects a job's working directory once the job's
trial workers release it, under the still-running driver); the job's driver runs
`plasticity sweep -` on the head node, which joins the cluster (`--address auto`) and
writes everything under the storage location, which every node must see (object storage,
or a shared mount). The project must be installed on every node (cluster/ does that).

Authentication: a cluster started with RAY_AUTH_MODE=token (as cluster/ defines them) answers
only clients holding its token, which Ray reads from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token. Reach the Jobs API through an SSH tunnel (`ray dashboard cluster/aws.yaml`),
never through an open port.
"""

from __future__ import annotations

import shlex

import yaml

from plasticity_core.errors import ConfigError, PlasticityError
from runner.spec import MAX_TRIALS, SweepSpec
from runner.storage import is_uri

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def client(address: str):
    """A Jobs API client, with connection and token problems turned into one clear line."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise ConfigError(
            "submitting needs Ray's Jobs client: pip install 'plasticity-bench[cluster]'"
        ) from None
    try:
        return JobSubmissionClient(address)
    except Exception as err:
        raise _explain(err, address) from None


def _explain(err: Exception, address: str) -> PlasticityError:
    text = str(err)
    if type(err).__name__ == "AuthenticationError" or "401" in text or "token" in text.lower():
        return ConfigError(
            f"the Ray cluster at {address} refused the request: it needs its authentication "
            "token. Copy it from the head (`ray get-auth-token`) into ~/.ray/auth_token or "
            "RAY_AUTH_TOKEN, with RAY_AUTH_MODE=token"
        )
    return ConfigError(f"cannot reach Ray's Jobs API at {address} ({text.splitlines()[0]})")


def submit(
    spec: SweepSpec, address: str, storage: str, stage: str = "all", max_trials: int = MAX_TRIALS
) -> str:
    """Submits the sweep; returns the job id. `max_trials` is the ceiling the spec passed
    here, given to the job's own `plasticity sweep` too."""
    if not is_uri(storage) and not storage.startswith("/"):
        raise ConfigError(
            f"--storage {storage!r}: give a URI every node can reach (s3://, gs://) or an "
            "absolute path on storage shared by every node"
        )
    jobs = client(address)
    entrypoint = (
        f"printenv PLASTICITY_SPEC | plasticity sweep - --stage {stage} --address auto "
        f"--out {shlex.quote(storage)} --max-trials {max_trials}"
    )
    try:
        return jobs.submit_job(
            entrypoint=entrypoint,
            runtime_env={"env_vars": {"PLASTICITY_SPEC": yaml.safe_dump(spec.to_dict())}},
            metadata={"plasticity_experiment": spec.name, "storage": storage},
        )
    except Exception as err:
        raise _explain(err, address) from None


def job_status_lines(address: str, job_id: str | None = None) -> list[str]:
    """One line per job (or the given job): id, status, experiment, storage."""
    jobs = client(address)
    try:
        infos = [jobs.get_job_info(job_id)] if job_id else jobs.list_jobs()
    except Exception as err:
        raise _explain(err, address) from None
    lines = []
    for info in infos:
        meta = info.metadata or {}
        name = meta.get("plasticity_experiment", "-")
        where = meta.get("storage", "")
        lines.append(
            f"{info.submission_id}  {info.status.value:9s}  {name}  "
            f"{where.rstrip('/') + '/' + name if where else ''}  "
            f"{(info.message or '').strip().splitlines()[0] if info.message else ''}".rstrip()
        )
    return lines or [f"no jobs on {address}"]


def job_logs(address: str, job_id: str) -> str:
    jobs = client(address)
    try:
        return jobs.get_job_logs(job_id)
    except Exception as err:
        raise _explain(err, address) from None
