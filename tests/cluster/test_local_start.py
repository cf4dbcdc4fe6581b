"""The local cluster's start tries again once after Ray's node start timeouts.

Ray raises them from inside ``Cluster``/``add_node`` when a raylet does not register in 30 s
or a GCS does not write its port file in time; on a busy 2-core machine a node's process
never came up, twice. Any other failure must surface at once, and a second timeout too.
"""

from __future__ import annotations

import pytest

from clipsearch.cluster import local

pytestmark = pytest.mark.cluster

TIMEOUT = Exception(
    "The current node timed out during startup. This could happen because some of the raylet "
    "failed to startup or the GCS has become overloaded."
)


class FakeCluster:
    """Stands in for ray.cluster_utils.Cluster; fails as scripted, records shutdowns."""

    script: list[Exception | None] = []
    made: list[FakeCluster] = []

    def __init__(self, initialize_head: bool, head_node_args: dict):
        self.down = False
        self.nodes: list[dict] = []
        FakeCluster.made.append(self)

    def add_node(self, **args):
        failure = FakeCluster.script.pop(0)
        if failure is not None:
            raise failure
        self.nodes.append(args)
        return args

    def wait_for_nodes(self) -> None:
        pass

    def shutdown(self) -> None:
        self.down = True


@pytest.fixture
def fake(monkeypatch):
    import ray.cluster_utils

    monkeypatch.setattr(ray.cluster_utils, "Cluster", FakeCluster)
    FakeCluster.made = []
    return FakeCluster


def test_a_registration_timeout_is_tried_once_more(fake):
    fake.script = [None, TIMEOUT, None, None]
    cluster, nodes = local.start_nodes({}, [{"resources": {"a": 1}}, {"resources": {"b": 1}}])
    assert len(fake.made) == 2 and fake.made[0].down and not fake.made[1].down
    assert cluster is fake.made[1] and nodes == [{"resources": {"a": 1}}, {"resources": {"b": 1}}]


def test_a_gcs_that_never_wrote_its_port_is_tried_once_more(fake):
    fake.script = [RuntimeError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port_abc"), None]
    cluster, nodes = local.start_nodes({}, [{}])
    assert len(fake.made) == 2 and fake.made[0].down and cluster is fake.made[1] and nodes == [{}]


def test_a_second_timeout_is_raised(fake):
    fake.script = [TIMEOUT, TIMEOUT]
    with pytest.raises(Exception, match="timed out during startup"):
        local.start_nodes({}, [{}])
    assert len(fake.made) == 2 and all(c.down for c in fake.made)


def test_other_failures_are_raised_at_once(fake):
    fake.script = [ValueError("bad resources")]
    with pytest.raises(ValueError, match="bad resources"):
        local.start_nodes({}, [{}])
    assert len(fake.made) == 1 and fake.made[0].down
