"""The running service's shared parts, built once by ``create_app`` (or a worker) and passed around."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from modelyard.bus import EventBus
from modelyard.db import unit_of_work
from modelyard.metrics import Metrics
from modelyard.settings import Settings
from modelyard.storage import Storage

if TYPE_CHECKING:
    from modelyard.auth import KeyVerifier
    from modelyard.serving.service import InferenceService


@dataclass
class AppContext:
    """Settings, database, artifact store, metrics and services of one process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    metrics: Metrics
    verifier: KeyVerifier
    inference: InferenceService
    bus: EventBus = field(default_factory=EventBus)
    extras: dict[str, Any] = field(default_factory=dict)

    def uow(self) -> AbstractContextManager[Session]:
        """A unit of work: a session committed on success, rolled back on error."""
        return unit_of_work(self.sessions)
