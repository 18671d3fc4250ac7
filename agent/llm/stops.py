"""Stop strings on streamed text: the cut every chat model of the agent applies itself.

Servers and ``generate`` may run past a stop string, or split one across two pieces, so
both :class:`~pursuit.agent.llm.local.InProcessLLM` and
:class:`~pursuit.agent.llm.http.OpenAIChatLLM` pass their text through :class:`StopCut`.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopCut:
    """Cuts streamed text at the first stop string, holding back a possible partial match.

    Args:
        stop: The stop strings (empty ones are ignored); ``None`` cuts nothing.

    Example:
        >>> cut = StopCut(["END"])
        >>> [cut.feed("Hello E"), cut.feed("ND and more"), cut.flush()]
        ['Hello ', '', '']
    """

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stops = [s for s in stop or () if s]
        self.text, self.sent, self.done = "", 0, False

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text now safe to emit ("" once a stop string was seen)."""
        if self.done:
            return ""
        self.text += piece
        hits = [i for i in (self.text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.done = True
            out, self.sent = self.text[self.sent:min(hits)], min(hits)
            return out
        # A tail that could still grow into a stop string waits for the next piece.
        hold = max((k for s in self.stops for k in range(1, len(s))
                    if self.text.endswith(s[:k])), default=0)
        safe = max(self.sent, len(self.text) - hold)
        out, self.sent = self.text[self.sent:safe], safe
        return out

    def flush(self) -> str:
        """The held-back tail once the text is complete."""
        out = "" if self.done else self.text[self.sent:]
        self.sent = len(self.text)
        return out
