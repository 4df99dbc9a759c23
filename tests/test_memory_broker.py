"""The embedded broker wakes an idle worker when a message is put or a slot frees.

Kombu's own in-memory transport polls: with an interval of 60 s, a consumer that waits on an
empty queue looks again only after 60 s (or at its own timeout). Ours is woken. Each test waits
15 s for the consumer to have the message, far above a wake-up and far below the interval, so it
tells the two apart whatever the machine's load.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kombu import Connection, Consumer, Exchange, Producer, Queue

TRANSPORT = "contentstudio.memory_broker:Transport"
POLL = 60.0


def _connection() -> Connection:
    return Connection(
        "memory://localhost/", transport=TRANSPORT, transport_options={"polling_interval": POLL}
    )


def _in_thread(fn: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_an_idle_consumer_takes_a_message_as_soon_as_it_is_put() -> None:
    got: list[Any] = []
    with _connection() as conn:
        queue = conn.SimpleQueue("wake-on-put")
        # given a consumer waiting on the empty queue
        waiting = _in_thread(lambda: got.append(queue.get(block=True, timeout=POLL - 10)))
        time.sleep(0.2)
        # when another thread puts a message
        with _connection() as other:
            other.SimpleQueue("wake-on-put").put({"job": 1})
        # then the consumer has it well before its next look would have come
        waiting.join(timeout=15)
        assert not waiting.is_alive(), "the consumer was not woken by the put"
        assert got[0].payload == {"job": 1}
        got[0].ack()
        queue.close()


def test_a_consumer_with_every_slot_taken_takes_the_next_message_when_one_is_acked() -> None:
    exchange = Exchange("wake-on-ack", type="direct")
    queue = Queue("wake-on-ack", exchange, routing_key="wake-on-ack")
    received: list[Any] = []
    with _connection() as conn:
        producer = Producer(conn.channel(), exchange=exchange, routing_key="wake-on-ack")
        queue(producer.channel).declare()
        # given two messages and a consumer allowed one unacknowledged message at a time
        producer.publish({"n": 1})
        producer.publish({"n": 2})
        consumer = Consumer(
            conn.channel(), [queue], callbacks=[lambda body, msg: received.append(msg)]
        )
        consumer.qos(prefetch_count=1)
        consumer.consume()
        conn.drain_events(timeout=POLL - 10)
        assert [m.payload for m in received] == [{"n": 1}]
        # when the consumer waits with its slot taken, and the first message is acknowledged
        waiting = _in_thread(lambda: conn.drain_events(timeout=POLL - 10))
        time.sleep(0.2)
        received[0].ack()
        # then the second one is delivered at once, not at the next look
        waiting.join(timeout=15)
        assert not waiting.is_alive(), "the consumer was not woken by the ack"
        assert [m.payload for m in received] == [{"n": 1}, {"n": 2}]
        received[1].ack()
        consumer.cancel()
