"""netcheck: can this connection carry the nonverbal cues of a video therapy session?"""

__version__ = "0.1.0"
