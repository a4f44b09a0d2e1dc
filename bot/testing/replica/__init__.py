"""A local replica of meet.google.com, zoom.us and Microsoft Teams for tests: the server, rooms, and
platform page seam."""

from bot.testing.replica.room import ParticipantInfo, Room, RoomConfig, RoomError
from bot.testing.replica.server import REPLICA_DIR, PlatformPages, ReplicaServer

__all__ = [
    "REPLICA_DIR",
    "ParticipantInfo",
    "PlatformPages",
    "ReplicaServer",
    "Room",
    "RoomConfig",
    "RoomError",
]
