"""LeadScore: real-time ML lead scoring for real-estate teams."""

__version__ = "0.2.0"
