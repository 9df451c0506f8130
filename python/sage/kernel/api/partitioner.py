"""Partitioner: picks the instance of the next operator for each record, for
``stream.partition_custom(MyPartitioner(), parallelism=4)``."""


class Partitioner:
    """Implement ``partition(record, num_partitions)``, returning an int in
    ``[0, num_partitions)``; any other value fails the job. Each parallel instance
    of the upstream operator uses its own copy."""

    def partition(self, record, num_partitions):
        raise NotImplementedError(f"{type(self).__name__} must implement partition()")
