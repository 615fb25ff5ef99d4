//! Authentication and plaintext: per-source penalties, token files, the key
//! exchange, and plaintext only where it cannot be overheard.
