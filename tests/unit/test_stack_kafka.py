"""The local Kafka's cluster id (mimamori/stack/kafka.py)."""

import base64

from mimamori.stack.kafka import new_cluster_id


def test_a_cluster_id_is_a_uuid_that_the_storage_tool_cannot_take_for_an_option():
    ids = [new_cluster_id() for _ in range(5_000)]  # about 78 would start with "-" without the check
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
    assert all(len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 for cluster_id in ids)
    assert len(set(ids)) == len(ids)
