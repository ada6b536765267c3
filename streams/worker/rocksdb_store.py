"""Faust's RocksDB store, choosing each key's per-partition database from the key itself.

Faust's store picks the database from the current event's partition, which is wrong
for batched writes (`take_events`) and impossible in timers; KeyPartitionedTable
computes a key's partition the way Kafka's producer did, and this store uses that.
"""

from __future__ import annotations

from faust.stores import rocksdb

__all__ = ["KeyPartitionedRocksDB"]


class KeyPartitionedRocksDB(rocksdb.Store):
    """One RocksDB per partition, addressed by the table's partition_for_key."""

    def _partition(self, key: bytes) -> int:
        return self.table.partition_for_key(key)

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = self._partition(key)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)

    def _get(self, key: bytes) -> bytes | None:
        partition = self._partition(key)
        value = self._db_for_partition(partition).get(key)
        if value is not None:
            self._key_index[key] = partition
        return value

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None
