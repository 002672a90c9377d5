"""A small Python client for the HTTP API (what a support bot would import)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


class RecagentClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8400", token: str | None = None,
                 timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def recommend(self, user: str | None = None, history: list[str] | None = None, query: str | None = None,
                  filters: dict[str, Any] | None = None, k: int = 5) -> dict[str, Any]:
        body = {"user": user, "history": history, "query": query, "filters": filters, "k": k}
        return self._json(self.http.post("/v1/recommend", json=body))

    def new_conversation(self, user: str | None = None) -> str:
        return str(self._json(self.http.post("/v1/conversations", json={"user": user}))["id"])

    def send(self, conversation_id: str, text: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/v1/conversations/{conversation_id}/messages",
                                         json={"text": text}))

    def stream(self, conversation_id: str, text: str) -> Iterator[dict[str, Any]]:
        """Server-sent events: {'type': 'items' | 'delta' | 'done', ...}."""
        with self.http.stream("POST", f"/v1/conversations/{conversation_id}/messages",
                              json={"text": text, "stream": True}) as response:
            if response.status_code >= 400:
                response.read()
                raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[6:])

    def feedback(self, conversation_id: str, item_id: str, kind: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/v1/conversations/{conversation_id}/feedback",
                                         json={"item_id": item_id, "kind": kind}))

    def state(self, conversation_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/conversations/{conversation_id}"))

    def delete(self, conversation_id: str) -> None:
        self._json(self.http.delete(f"/v1/conversations/{conversation_id}"))
