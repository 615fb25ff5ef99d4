//! The server's doors and lifetime: shutdown that always finishes, logging
//! that never stops the server, token-less listeners that cannot starve
//! token holders, and work that stops when its client leaves.
