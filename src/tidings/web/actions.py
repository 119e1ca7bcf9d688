"""The client actions that await the store, carried out for any transport.

A transport parses a frame into an action, hands it here with the caller's
identity and writes back the reply frame, or the error frame of what this
raises (``TidingsError``).
"""

from __future__ import annotations

from tidings.core.protocol import (
    MarkAction,
    SendNotification,
    SubscribeAction,
    ack_frame,
    reply_frame,
)
from tidings.core.tokens import Identity
from tidings.node import Node
from tidings.web.throttle import Throttle

Action = SendNotification | MarkAction | SubscribeAction


async def carry_out(node: Node, throttle: Throttle, who: Identity, action: Action) -> bytes:
    """Do ``action`` as ``who``; the encoded reply frame."""
    if isinstance(action, SendNotification):
        throttle.publish(who)
        result = await node.send(who, action)
        return ack_frame(action.request_id, result.id, result.seqs[0][1])
    if isinstance(action, SubscribeAction):
        if action.subscribe:
            starts = await node.subscribe([who.user_id], action.topic)
            seq = starts[who.user_id]
        else:
            await node.unsubscribe(who.user_id, action.topic)
            seq = 0
        return reply_frame(action.request_id, topic=action.topic, seq=seq)
    changed, _ = await node.mark(who.user_id, action.mark)
    return reply_frame(action.request_id, changed=len(changed))
