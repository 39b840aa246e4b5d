"""Notifications: channels (one module each, registered by name), the events
they carry, and the policy that keeps a failing configuration from sending
one message per failed run."""
