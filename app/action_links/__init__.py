"""The pages an owner reaches from an e-mail: a step's action page (/a/<token>) and the
one-click unsubscribe page (/u/<token>)."""
